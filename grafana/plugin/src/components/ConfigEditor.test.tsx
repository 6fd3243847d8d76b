import React from 'react';
import { fireEvent, render, screen } from '@testing-library/react';
import { DataSourceSettings } from '@grafana/data';

import { ConfigEditor } from './ConfigEditor';
import { EdgeloopOptions, EdgeloopSecureJsonData } from '../types';

type Settings = DataSourceSettings<EdgeloopOptions, EdgeloopSecureJsonData>;

// A value no test ever expects to see on the page: if it shows, a secret leaked.
const CANARY = 'edgeloop-secret-canary-7f3a';

function settings(over: Partial<Settings> = {}): Settings {
  return {
    id: 1,
    uid: 'edgeloop',
    orgId: 1,
    name: 'edgeloop',
    type: 'edgeloop-edgeloop-datasource',
    typeName: 'edgeloop',
    typeLogoUrl: '',
    access: 'proxy',
    url: '',
    user: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    withCredentials: false,
    readOnly: false,
    jsonData: {},
    secureJsonFields: {},
    ...over,
  } as Settings;
}

function setup(over: Partial<Settings> = {}) {
  const onOptionsChange = jest.fn();
  const options = settings(over);
  const view = render(<ConfigEditor options={options} onOptionsChange={onOptionsChange} />);
  const last = (): Settings => onOptionsChange.mock.calls[onOptionsChange.mock.calls.length - 1][0];
  return { onOptionsChange, options, view, last };
}

describe('ConfigEditor', () => {
  test('shows the jsonData it is given', () => {
    setup({
      jsonData: {
        collectorUrl: 'https://collector:9751',
        controllerUrl: 'https://retrain:9752',
        repositoryUrl: 's3://edgeloop?endpoint=minio:9000',
        thumbnailCacheEntries: 500,
        timeoutSeconds: 10,
      },
    });
    expect(screen.getByLabelText('Collector URL')).toHaveValue('https://collector:9751');
    expect(screen.getByLabelText('Controller URL')).toHaveValue('https://retrain:9752');
    expect(screen.getByLabelText('Repository URL')).toHaveValue('s3://edgeloop?endpoint=minio:9000');
    expect(screen.getByLabelText('Thumbnail cache entries')).toHaveValue(500);
    expect(screen.getByLabelText('Thumbnail cache bytes')).toHaveValue(null);
    expect(screen.getByLabelText('Timeout (seconds)')).toHaveValue(10);
    // allowedRoles unset: the backend's default, Editor and Admin, is what the editor shows.
    expect(screen.getByText('Editor')).toBeInTheDocument();
    expect(screen.getByText('Admin')).toBeInTheDocument();
    expect(screen.queryByText('Viewer')).not.toBeInTheDocument();
  });

  test.each([
    ['Collector URL', 'collectorUrl', ' https://c:9751 ', 'https://c:9751'],
    ['Controller URL', 'controllerUrl', 'http://r:9752', 'http://r:9752'],
    ['Repository URL', 'repositoryUrl', 'file:///srv/models', 'file:///srv/models'],
    ['Thumbnail cache entries', 'thumbnailCacheEntries', '250', 250],
    ['Thumbnail cache bytes', 'thumbnailCacheBytes', '1048576', 1048576],
    ['Timeout (seconds)', 'timeoutSeconds', '45', 45],
  ])('editing %s sets jsonData.%s', (label, key, typed, want) => {
    const { last } = setup({ jsonData: { collectorUrl: 'https://old:9751' } });
    fireEvent.change(screen.getByLabelText(label), { target: { value: typed } });
    const got = last();
    expect((got.jsonData as Record<string, unknown>)[key]).toEqual(want);
    if (key !== 'collectorUrl') {
      expect(got.jsonData.collectorUrl).toBe('https://old:9751');
    }
    // Nothing of jsonData goes into the secrets, nor the other way round.
    expect(got.secureJsonData ?? {}).toEqual({});
  });

  test.each([
    ['Collector URL', 'collectorUrl'],
    ['Thumbnail cache bytes', 'thumbnailCacheBytes'],
    ['Timeout (seconds)', 'timeoutSeconds'],
  ])('clearing %s removes the key, so the backend’s default applies', (label, key) => {
    const { last } = setup({
      jsonData: { collectorUrl: 'https://c:9751', controllerUrl: 'https://r:9752', thumbnailCacheBytes: 1024, timeoutSeconds: 5 },
    });
    fireEvent.change(screen.getByLabelText(label), { target: { value: '' } });
    const got = last().jsonData as Record<string, unknown>;
    expect(key in got).toBe(false);
    expect(got.controllerUrl).toBe('https://r:9752');
  });

  test.each([
    ['Collector token', 'collectorToken'],
    ['Controller token', 'controllerToken'],
    ['Access key', 'repositoryAccessKey'],
    ['Secret key', 'repositorySecretKey'],
    ['Repository token', 'repositoryToken'],
  ] as const)('%s: a new value goes to secureJsonData only, as a password field', (label, key) => {
    const { last } = setup();
    const input = screen.getByLabelText(label);
    expect(input).toHaveAttribute('type', 'password');
    expect(input).toHaveValue('');
    fireEvent.change(input, { target: { value: 'tok-123' } });
    const got = last();
    expect(got.secureJsonData?.[key]).toBe('tok-123');
    expect(JSON.stringify(got.jsonData)).not.toContain('tok-123');
  });

  test.each([
    ['Collector token', 'collectorToken'],
    ['Controller token', 'controllerToken'],
    ['Access key', 'repositoryAccessKey'],
    ['Secret key', 'repositorySecretKey'],
    ['Repository token', 'repositoryToken'],
    ['CA certificate', 'tlsCACert'],
  ] as const)('%s: a configured secret shows "configured", never its value, and can be reset', (label, key) => {
    // Grafana sends secureJsonFields (which are set), never secureJsonData; the canary in
    // secureJsonData checks that even a value in the options is not shown.
    const { view, last } = setup({
      secureJsonFields: { [key]: true },
      secureJsonData: { [key]: CANARY },
    });
    const input = screen.getByLabelText(label);
    expect(input).toBeDisabled();
    expect(input).toHaveValue('configured');
    expect(view.container.innerHTML).not.toContain(CANARY);

    const resets = screen.getAllByRole('button', { name: 'Reset' });
    expect(resets).toHaveLength(1);
    fireEvent.click(resets[0]);
    const got = last();
    expect(got.secureJsonFields[key]).toBe(false);
    expect(got.secureJsonData?.[key]).toBe('');
  });

  test('no secret is on the page when every one is configured', () => {
    const keys = ['collectorToken', 'controllerToken', 'repositoryToken', 'repositoryAccessKey', 'repositorySecretKey', 'tlsCACert'];
    const { view } = setup({
      jsonData: { collectorUrl: 'https://c:9751', controllerUrl: 'https://r:9752' },
      secureJsonFields: Object.fromEntries(keys.map((k) => [k, true])),
      secureJsonData: Object.fromEntries(keys.map((k) => [k, `${CANARY}-${k}`])),
    });
    expect(screen.getAllByRole('button', { name: 'Reset' })).toHaveLength(keys.length);
    expect(view.container.innerHTML).not.toContain(CANARY);
  });

  test('removing a role writes allowedRoles without it', () => {
    const { last } = setup({ jsonData: { allowedRoles: ['Editor', 'Admin'] } });
    // One "Remove" button per chosen role, in the order shown: Editor's is the first.
    const removes = screen.getAllByRole('button', { name: 'Remove' });
    expect(removes).toHaveLength(2);
    fireEvent.click(removes[0]);
    expect(last().jsonData.allowedRoles).toEqual(['Admin']);
  });

  test('the editor writes only the keys the backend knows', () => {
    const { onOptionsChange } = setup();
    for (const label of ['Collector URL', 'Controller URL', 'Repository URL']) {
      fireEvent.change(screen.getByLabelText(label), { target: { value: 'https://x:1' } });
    }
    for (const label of ['Thumbnail cache entries', 'Thumbnail cache bytes', 'Timeout (seconds)']) {
      fireEvent.change(screen.getByLabelText(label), { target: { value: '7' } });
    }
    const known = ['collectorUrl', 'controllerUrl', 'repositoryUrl', 'allowedRoles', 'thumbnailCacheEntries', 'thumbnailCacheBytes', 'timeoutSeconds'];
    expect(onOptionsChange).toHaveBeenCalledTimes(6);
    for (const [opts] of onOptionsChange.mock.calls) {
      for (const k of Object.keys(opts.jsonData)) {
        expect(known).toContain(k);
      }
    }
  });
});
