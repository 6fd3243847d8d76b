import React from 'react';
import { render, screen } from '@testing-library/react';
import { AppRootProps, FieldType, PluginType, toDataFrame } from '@grafana/data';
import { MemoryRouter } from 'react-router-dom-v5-compat';

import { App } from './App';
import { fakeGrafana } from './testkit';

jest.setTimeout(60000);

const props = {
  basename: '/a/edgeloop-edgeloop-app',
  meta: { id: 'edgeloop-edgeloop-app', name: 'edgeloop', type: PluginType.app, enabled: true, jsonData: {} },
  query: {},
  path: '',
  onNavChanged: jest.fn(),
} as unknown as AppRootProps;

const jobs = toDataFrame({ name: 'jobs', fields: [{ name: 'id', type: FieldType.string, values: ['job-9'] }] });
const versions = toDataFrame({
  name: 'versions',
  fields: [
    { name: 'model', type: FieldType.string, values: ['fashion'] },
    { name: 'version', type: FieldType.number, values: [7] },
  ],
});

describe('App', () => {
  test.each([
    ['/', 'Choose a model to review its samples'],
    ['/review', 'Choose a model to review its samples'],
    ['/jobs', 'job-9'],
    ['/versions', 'fashion'],
  ])('%s shows its page', async (path, text) => {
    fakeGrafana({ role: 'Viewer', frames: { jobs, versions }, resources: { 'GET models': () => ({ data: { models: [] } }) } });
    render(
      <MemoryRouter initialEntries={[path]} future={{ v7_startTransition: true, v7_relativeSplatPath: true }}>
        <App {...props} />
      </MemoryRouter>
    );
    expect(await screen.findByText(text)).toBeInTheDocument();
  });
});
