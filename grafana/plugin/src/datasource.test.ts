import { DataSourceInstanceSettings, PluginType } from '@grafana/data';
import { BackendSrv, BackendSrvRequest, setBackendSrv } from '@grafana/runtime';
import { of } from 'rxjs';

import { DataSource, fieldsFor, interpolate } from './datasource';
import { EdgeloopOptions, EdgeloopQuery } from './types';

function instance(uid = 'P0edgeloop'): DataSource {
  const settings = {
    id: 1,
    uid,
    type: 'edgeloop-edgeloop-datasource',
    name: 'edgeloop',
    access: 'proxy',
    readOnly: false,
    jsonData: { collectorUrl: 'https://c:9751' },
    meta: { id: 'edgeloop-edgeloop-datasource', name: 'edgeloop', type: PluginType.datasource, info: {}, module: '', baseUrl: '' },
  } as unknown as DataSourceInstanceSettings<EdgeloopOptions>;
  return new DataSource(settings);
}

describe('DataSource', () => {
  test.each<[string, EdgeloopQuery, boolean]>([
    ['catalog without a model', { refId: 'A', queryType: 'catalog' }, true],
    ['samples with a model', { refId: 'A', queryType: 'samples', model: 'fashion' }, true],
    ['samples without a model', { refId: 'A', queryType: 'samples' }, false],
    ['a hidden query', { refId: 'A', queryType: 'jobs', hide: true }, false],
  ])('filterQuery: %s', (_, q, want) => {
    expect(instance().filterQuery(q)).toBe(want);
  });

  test('annotations are supported, version annotations by default', () => {
    const ds = instance();
    expect(ds.annotations).toBeDefined();
    expect(ds.annotations?.getDefaultQuery?.()).toEqual({ queryType: 'versionAnnotations' });
  });

  test('a new query is a catalog query', () => {
    expect(instance().getDefaultQuery('dashboard' as never)).toEqual({ queryType: 'catalog' });
  });

  test('thumbnailUrl escapes the uid and key', () => {
    expect(instance('P0edgeloop').thumbnailUrl('0123abcd')).toBe('/api/datasources/uid/P0edgeloop/resources/thumbnail?key=0123abcd');
    expect(instance('a b').thumbnailUrl('k&x')).toBe('/api/datasources/uid/a%20b/resources/thumbnail?key=k%26x');
  });

  test('interpolate replaces variables in the text fields only', () => {
    const q: EdgeloopQuery = { refId: 'A', queryType: 'samples', model: '$model', node: '${node}', reason: 'plain', limit: 5, minConfidence: 0.5 };
    const vars: Record<string, string> = { $model: 'fashion', '${node}': 'edge-1' };
    const got = interpolate(q, (s) => vars[s] ?? s);
    expect(got).toEqual({ refId: 'A', queryType: 'samples', model: 'fashion', node: 'edge-1', reason: 'plain', limit: 5, minConfidence: 0.5 });
    expect(q.model).toBe('$model');
  });

  test('fieldsFor drops the fields the new type does not read', () => {
    const q: EdgeloopQuery = { refId: 'B', queryType: 'jobs', model: 'm', phase: 'running', hide: false };
    expect(fieldsFor(q, 'catalog')).toEqual({ refId: 'B', queryType: 'catalog', model: 'm', hide: false });
    expect(fieldsFor(q, 'jobAnnotations')).toEqual({ refId: 'B', queryType: 'jobAnnotations', model: 'm', phase: 'running', hide: false });
  });

  describe('actions go to the backend’s resources', () => {
    const calls: BackendSrvRequest[] = [];
    beforeAll(() => {
      // DataSourceWithBackend sends resource calls through BackendSrv.fetch, Grafana's HTTP client.
      const fetch = (req: BackendSrvRequest) => {
        calls.push(req);
        return of({ data: { answer: req.url } });
      };
      setBackendSrv({ fetch } as unknown as BackendSrv);
    });
    beforeEach(() => {
      calls.length = 0;
    });

    test('models', async () => {
      await expect(instance().getModels()).resolves.toEqual({ answer: '/api/datasources/uid/P0edgeloop/resources/models' });
      expect(calls).toHaveLength(1);
      expect(calls[0].method).toBe('GET');
    });

    test('labels', async () => {
      await instance().postLabels('fashion', [{ key: 'k1', label: 3 }, { request_id: 'r2', label: 'shirt' }]);
      expect(calls).toHaveLength(1);
      expect(calls[0].method).toBe('POST');
      expect(calls[0].url).toBe('/api/datasources/uid/P0edgeloop/resources/labels');
      expect(calls[0].data).toEqual({ model: 'fashion', labels: [{ key: 'k1', label: 3 }, { request_id: 'r2', label: 'shirt' }] });
    });

    test('retrain', async () => {
      await instance().retrain('fashion', 'new labels', true);
      expect(calls[0].url).toBe('/api/datasources/uid/P0edgeloop/resources/retrain');
      expect(calls[0].data).toEqual({ model: 'fashion', reason: 'new labels', force: true });
    });

    test('aliases', async () => {
      await instance().moveAlias('fashion', 'stable', 3, 'roll back');
      expect(calls[0].method).toBe('POST');
      expect(calls[0].url).toBe('/api/datasources/uid/P0edgeloop/resources/aliases');
      expect(calls[0].data).toEqual({ model: 'fashion', alias: 'stable', version: 3, reason: 'roll back' });
    });

    test('cancel', async () => {
      await instance().cancelJob('job/1');
      expect(calls[0].method).toBe('POST');
      expect(calls[0].url).toBe('/api/datasources/uid/P0edgeloop/resources/jobs/job%2F1/cancel');
    });
  });
});
