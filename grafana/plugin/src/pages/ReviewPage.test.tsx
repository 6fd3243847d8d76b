import React from 'react';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { FieldType, toDataFrame } from '@grafana/data';

import { ReviewPage } from './ReviewPage';
import { fakeGrafana, resourceCalls } from '../app/testkit';

// Grafana's components render slowly in jsdom on a shared two-core machine.
jest.setTimeout(60000);

/** samples is a samples frame as the backend makes it (the fields the review reads and some others). */
function samples(n: number) {
  const keys = Array.from({ length: n }, (_, i) => (i + 10).toString(16).padStart(32, '0'));
  return toDataFrame({
    name: 'samples',
    fields: [
      { name: 'time', type: FieldType.time, values: keys.map((_, i) => 1796640000000 - i * 1000) },
      { name: 'model', type: FieldType.string, values: keys.map(() => 'fashion') },
      { name: 'node', type: FieldType.string, values: keys.map(() => 'edge-1') },
      { name: 'reason', type: FieldType.string, values: keys.map(() => 'low_confidence') },
      { name: 'confidence', type: FieldType.number, values: keys.map((_, i) => 0.3 + i / 10) },
      { name: 'predicted_class', type: FieldType.string, values: keys.map((_, i) => `class${i}`) },
      { name: 'label', type: FieldType.string, values: keys.map(() => null) },
      { name: 'key', type: FieldType.string, values: keys },
      { name: 'thumbnail_url', type: FieldType.string, values: keys.map((k) => `/api/datasources/uid/P0edgeloop/resources/thumbnail?key=${k}`) },
    ],
  });
}

/** commit types into a filter field and leaves it, which runs the query. */
function commit(label: string, value: string) {
  const input = screen.getByLabelText(label);
  fireEvent.change(input, { target: { value } });
  fireEvent.blur(input);
}

function lastQuery(b: ReturnType<typeof fakeGrafana>): Record<string, unknown> {
  return (b.queries[b.queries.length - 1].queries as Array<Record<string, unknown>>)[0];
}

describe('ReviewPage', () => {
  test('asks for a model first, offering the models resource’s names', async () => {
    const b = fakeGrafana({ role: 'Editor', resources: { 'GET models': () => ({ data: { models: ['fashion', 'digits'] } }) } });
    const { container } = render(<ReviewPage />);
    expect(await screen.findByText('Choose a model to review its samples')).toBeInTheDocument();
    await waitFor(() => expect(container.querySelectorAll('datalist option')).toHaveLength(2));
    expect(b.queries).toHaveLength(0);
    expect(resourceCalls(b)).toEqual(['GET models']);
  });

  test('filters make the samples query; its rows are the review’s thumbnails', async () => {
    const b = fakeGrafana({ role: 'Editor', frames: { samples: samples(3) }, resources: { 'GET models': () => ({ data: { models: [] } }) } });
    render(<ReviewPage />);
    commit('Model', 'fashion');
    expect(await screen.findAllByRole('gridcell')).toHaveLength(3);
    expect(screen.getAllByRole('img')[0]).toHaveAttribute('src', `/api/datasources/uid/P0edgeloop/resources/thumbnail?key=${'a'.padStart(32, '0')}`);
    expect(lastQuery(b)).toEqual({
      queryType: 'samples',
      model: 'fashion',
      refId: 'A',
      datasource: { type: 'edgeloop-edgeloop-datasource', uid: 'P0edgeloop' },
      datasourceId: 1,
      intervalMs: 60000,
      maxDataPoints: 1000,
    });
    commit('Node', 'edge-1');
    commit('Reason', 'low_confidence');
    commit('Confidence ≥', '0.2');
    commit('Confidence ≤', '0.6');
    commit('Limit', '50');
    await waitFor(() => expect(b.queries).toHaveLength(6));
    expect(lastQuery(b)).toMatchObject({
      queryType: 'samples',
      model: 'fashion',
      node: 'edge-1',
      reason: 'low_confidence',
      minConfidence: 0.2,
      maxConfidence: 0.6,
      limit: 50,
    });
    expect(Number(b.queries[5].to) - Number(b.queries[5].from)).toBe(86400e3);
  });

  test('an Editor labels from the keyboard; the labels resource gets the batch', async () => {
    const bodies: unknown[] = [];
    const b = fakeGrafana({
      role: 'Editor',
      frames: { samples: samples(3) },
      resources: {
        'GET models': () => ({ data: { models: [] } }),
        'POST labels': (body) => {
          bodies.push(body);
          return { status: 201, data: { stored: 2 } };
        },
      },
    });
    render(<ReviewPage />);
    commit('Model', 'fashion');
    const grid = await screen.findByRole('grid', { name: 'Samples to review' });
    await screen.findAllByRole('gridcell');
    fireEvent.keyDown(grid, { key: '3' });
    fireEvent.keyDown(grid, { key: '7' });
    fireEvent.keyDown(grid, { key: 'Enter' });
    expect(await screen.findByText('2 labels stored')).toBeInTheDocument();
    expect(bodies).toEqual([
      {
        model: 'fashion',
        labels: [
          { key: 'a'.padStart(32, '0'), label: 3 },
          { key: 'b'.padStart(32, '0'), label: 7 },
        ],
      },
    ]);
    expect(resourceCalls(b)).toContain('POST labels');
  });

  test('a Viewer sees the samples but cannot label', async () => {
    const b = fakeGrafana({ role: 'Viewer', frames: { samples: samples(2) }, resources: { 'GET models': () => ({ data: { models: [] } }) } });
    render(<ReviewPage />);
    commit('Model', 'fashion');
    const grid = await screen.findByRole('grid', { name: 'Samples to review' });
    expect(await screen.findAllByRole('gridcell')).toHaveLength(2);
    expect(screen.getByText('Your role may look but not label')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: /Send/ })).not.toBeInTheDocument();
    fireEvent.keyDown(grid, { key: '3' });
    fireEvent.keyDown(grid, { key: 'Enter' });
    expect(screen.queryByText('→ 3')).not.toBeInTheDocument();
    expect(resourceCalls(b)).toEqual(['GET models']);
  });

  test('no edgeloop data source: says how to add one', async () => {
    fakeGrafana({ role: 'Editor' });
    const { setDataSourceSrv } = jest.requireActual('@grafana/runtime');
    setDataSourceSrv({ getList: () => [], getInstanceSettings: () => undefined, get: () => Promise.reject(new Error('none')) });
    render(<ReviewPage />);
    expect(await screen.findByText('No edgeloop data source')).toBeInTheDocument();
  });
});
