import React from 'react';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';

import { QueryEditor } from './QueryEditor';
import { DataSource } from '../datasource';
import { EdgeloopQuery, QUERY_FIELDS, QueryType } from '../types';

function setup(query: Partial<EdgeloopQuery>, models: string[] | Error = ['digits', 'fashion']) {
  const onChange = jest.fn();
  const onRunQuery = jest.fn();
  const getModels = jest.fn(() => (models instanceof Error ? Promise.reject(models) : Promise.resolve({ models })));
  const datasource = { getModels } as unknown as DataSource;
  const view = render(
    <QueryEditor query={{ refId: 'A', ...query }} onChange={onChange} onRunQuery={onRunQuery} datasource={datasource} />
  );
  const last = (): EdgeloopQuery => onChange.mock.calls[onChange.mock.calls.length - 1][0];
  const modelOptions = () => [...view.container.querySelectorAll('#edgeloop-models option')].map((o) => o.getAttribute('value'));
  // loaded waits for the models resource's answer to reach the datalist.
  const loaded = () => waitFor(() => expect(modelOptions()).toEqual(models instanceof Error ? [] : models));
  return { onChange, onRunQuery, getModels, datasource, view, last, modelOptions, loaded };
}

// The labels of each field in the editor, by the backend's JSON name.
const LABELS: Record<string, string> = {
  model: 'Model',
  version: 'Version',
  node: 'Node',
  reason: 'Reason',
  minConfidence: 'Min confidence',
  maxConfidence: 'Max confidence',
  limit: 'Limit',
  phase: 'Phase',
  groupBy: 'Group by',
};

describe('QueryEditor', () => {
  test.each(Object.keys(QUERY_FIELDS) as QueryType[])('%s shows its own fields and no other', async (queryType) => {
    const { loaded } = setup({ queryType, model: 'fashion' });
    await loaded();
    for (const [field, label] of Object.entries(LABELS)) {
      // Group by is a radio group; the other fields are inputs (Reason is also one of Group by's radios).
      const shown = field === 'groupBy' ? screen.queryByText(label) : screen.queryByLabelText(label, { selector: 'input:not([type="radio"])' });
      if (QUERY_FIELDS[queryType].includes(field as never)) {
        expect(shown).toBeInTheDocument();
      } else {
        expect(shown).not.toBeInTheDocument();
      }
    }
  });

  test('a query without a type is a catalog query', async () => {
    const { loaded } = setup({});
    await loaded();
    expect(screen.getByLabelText('Model')).toHaveAttribute('placeholder', 'every model');
    expect(screen.getByText('Group by')).toBeInTheDocument();
  });

  test('changing the type keeps the fields the new type reads, drops the others, and runs', async () => {
    const { last, onRunQuery, loaded } = setup({
      queryType: 'samples',
      model: 'fashion',
      version: '3',
      node: 'edge-1',
      minConfidence: 0.2,
      limit: 50,
      datasource: { type: 'edgeloop-edgeloop-datasource', uid: 'x' },
    });
    await loaded();
    fireEvent.click(screen.getByText('Jobs'));
    expect(last()).toEqual({
      refId: 'A',
      queryType: 'jobs',
      model: 'fashion',
      datasource: { type: 'edgeloop-edgeloop-datasource', uid: 'x' },
    });
    expect(onRunQuery).toHaveBeenCalledTimes(1);
  });

  test('text fields change the query as one types and run it on blur', async () => {
    const { last, onRunQuery, loaded } = setup({ queryType: 'samples' });
    await loaded();
    const model = screen.getByLabelText('Model');
    fireEvent.change(model, { target: { value: ' fashion ' } });
    expect(last()).toEqual({ refId: 'A', queryType: 'samples', model: 'fashion' });
    expect(onRunQuery).not.toHaveBeenCalled();
    fireEvent.blur(model);
    expect(onRunQuery).toHaveBeenCalledTimes(1);
  });

  test.each([
    ['Min confidence', 'minConfidence', '0.35', 0.35],
    ['Max confidence', 'maxConfidence', '0.9', 0.9],
    ['Limit', 'limit', '250', 250],
    ['Node', 'node', 'edge-17', 'edge-17'],
    ['Reason', 'reason', 'low_confidence', 'low_confidence'],
    ['Version', 'version', '4', '4'],
  ])('samples: %s sets %s', async (label, key, typed, want) => {
    const { last, loaded } = setup({ queryType: 'samples', model: 'fashion' });
    await loaded();
    fireEvent.change(screen.getByLabelText(label), { target: { value: typed } });
    expect(last()).toEqual({ refId: 'A', queryType: 'samples', model: 'fashion', [key]: want });
  });

  test('clearing a number removes it, so the backend’s default applies', async () => {
    const { last, loaded } = setup({ queryType: 'samples', model: 'fashion', limit: 20 });
    await loaded();
    fireEvent.change(screen.getByLabelText('Limit'), { target: { value: '' } });
    expect(last()).toEqual({ refId: 'A', queryType: 'samples', model: 'fashion' });
  });

  test('catalog: group by runs at once', async () => {
    const { last, onRunQuery, loaded } = setup({ queryType: 'catalog', model: 'fashion' });
    await loaded();
    fireEvent.click(screen.getByText('Class'));
    expect(last()).toEqual({ refId: 'A', queryType: 'catalog', model: 'fashion', groupBy: 'class' });
    expect(onRunQuery).toHaveBeenCalledTimes(1);
  });

  test('jobs: phase offers the controller’s phases and takes any text', async () => {
    const { last, view, loaded } = setup({ queryType: 'jobs' });
    await loaded();
    const phases = view.container.querySelectorAll('#edgeloop-phases option');
    expect([...phases].map((o) => o.getAttribute('value'))).toContain('timed_out');
    fireEvent.change(screen.getByLabelText('Phase'), { target: { value: '$phase' } });
    expect(last()).toEqual({ refId: 'A', queryType: 'jobs', phase: '$phase' });
  });

  test('the model field offers the models the backend knows', async () => {
    const { getModels, modelOptions, loaded } = setup({ queryType: 'versions' }, ['alpha', 'fashion']);
    expect(modelOptions()).toEqual([]);
    await loaded();
    expect(getModels).toHaveBeenCalledTimes(1);
    expect(modelOptions()).toEqual(['alpha', 'fashion']);
    expect(screen.getByLabelText('Model')).toHaveAttribute('list', 'edgeloop-models');
  });

  test('the editor still works when the models resource fails', async () => {
    const { getModels, last, modelOptions } = setup({ queryType: 'decisions' }, new Error('403'));
    await waitFor(() => expect(getModels).toHaveBeenCalledTimes(1));
    expect(modelOptions()).toEqual([]);
    fireEvent.change(screen.getByLabelText('Model'), { target: { value: 'digits' } });
    expect(last()).toEqual({ refId: 'A', queryType: 'decisions', model: 'digits' });
  });

  test('samples without a model says it needs one', async () => {
    const { view, loaded, datasource } = setup({ queryType: 'samples' });
    await loaded();
    expect(screen.getByText('The samples query needs a model')).toBeInTheDocument();
    view.rerender(
      <QueryEditor query={{ refId: 'A', queryType: 'samples', model: 'fashion' }} onChange={jest.fn()} onRunQuery={jest.fn()} datasource={datasource} />
    );
    expect(screen.queryByText('The samples query needs a model')).not.toBeInTheDocument();
  });
});
