// Test helpers for the app's pages (not a test file itself): a fake Grafana around a real
// DataSource. Grafana's BackendSrv, DataSourceSrv and TemplateSrv are replaced with fakes that
// answer /api/ds/query with frames as the backend would encode them, and resource calls with
// what a test says; every request is recorded.
import { DataFrame, dataFrameToJSON, DataSourceInstanceSettings, PluginType } from '@grafana/data';
import {
  BackendSrv,
  BackendSrvRequest,
  config,
  DataSourceSrv,
  setBackendSrv,
  setDataSourceSrv,
  setTemplateSrv,
  TemplateSrv,
} from '@grafana/runtime';
import { of, throwError } from 'rxjs';

import { DataSource } from '../datasource';
import { EdgeloopOptions } from '../types';
import { DATASOURCE_TYPE } from './common';

/** Answer is what a fake backend route answers: a body, or an error with a status. */
export type Answer = { status?: number; data: unknown };

/** Backend is the fake Grafana: the requests it saw, and the frames and answers it gives. */
export interface Backend {
  calls: BackendSrvRequest[];
  /** queries are the bodies of /api/ds/query requests. */
  queries: Array<Record<string, unknown>>;
  ds: DataSource;
}

/**
 * fakeGrafana sets up Grafana's services for a page: one edgeloop data source (uid P0edgeloop,
 * jsonData as given), frames per query type, resources per "METHOD path" (the path under the
 * data source's resources/), and the user's organisation role.
 */
export function fakeGrafana(opts: {
  role: string;
  frames?: Record<string, DataFrame>;
  resources?: Record<string, (body: unknown) => Answer>;
  jsonData?: EdgeloopOptions;
}): Backend {
  const settings = {
    id: 1,
    uid: 'P0edgeloop',
    type: DATASOURCE_TYPE,
    name: 'edgeloop',
    access: 'proxy',
    readOnly: false,
    isDefault: false,
    jsonData: opts.jsonData ?? { collectorUrl: 'https://c:9751' },
    meta: {
      id: DATASOURCE_TYPE,
      name: 'edgeloop',
      type: PluginType.datasource,
      info: { logos: { small: '', large: '' } },
      module: '',
      baseUrl: '',
    },
  } as unknown as DataSourceInstanceSettings<EdgeloopOptions>;
  const ds = new DataSource(settings);
  const backend: Backend = { calls: [], queries: [], ds };
  const prefix = `/api/datasources/uid/${settings.uid}/resources/`;
  const fetch = (req: BackendSrvRequest) => {
    backend.calls.push(req);
    if (req.url.startsWith('/api/ds/query')) {
      const body = req.data as { queries: Array<Record<string, unknown>> };
      backend.queries.push(body as unknown as Record<string, unknown>);
      const q = body.queries[0];
      const frame = opts.frames?.[String(q.queryType)];
      const results = {
        [String(q.refId)]: frame ? { status: 200, frames: [dataFrameToJSON(frame)] } : { status: 400, error: `no ${q.queryType} here` },
      };
      return frame ? of({ data: { results }, status: 200 }) : throwError(() => ({ status: 400, data: { results } }));
    }
    const route = `${req.method} ${req.url.startsWith(prefix) ? req.url.slice(prefix.length) : req.url}`;
    const handler = opts.resources?.[route];
    if (!handler) {
      return throwError(() => ({ status: 404, data: { error: `no route ${route}` } }));
    }
    const ans = handler(req.data);
    if ((ans.status ?? 200) >= 400) {
      return throwError(() => ({ status: ans.status, data: ans.data }));
    }
    return of({ data: ans.data, status: ans.status ?? 200 });
  };
  setBackendSrv({ fetch } as unknown as BackendSrv);
  setDataSourceSrv({
    getList: () => [settings],
    getInstanceSettings: () => settings,
    get: () => Promise.resolve(ds),
  } as unknown as DataSourceSrv);
  setTemplateSrv({ replace: (s: string) => s } as unknown as TemplateSrv);
  config.bootData.user.orgRole = opts.role as never;
  return backend;
}

/** resourceCalls are the recorded calls to the data source's resources, as "METHOD path". */
export function resourceCalls(b: Backend): string[] {
  return b.calls
    .filter((c) => c.url.includes('/resources/'))
    .map((c) => `${c.method} ${c.url.slice(c.url.indexOf('/resources/') + '/resources/'.length)}`);
}
