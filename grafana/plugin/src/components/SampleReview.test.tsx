import React from 'react';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { FieldType, toDataFrame } from '@grafana/data';

import { SampleReview, readTiles } from './SampleReview';
import { DataSource } from '../datasource';
import { LabelAction } from '../types';

/** samples is a samples frame as the backend makes it (the fields the review reads and some others). */
function samples(n: number) {
  const keys = Array.from({ length: n }, (_, i) => i.toString(16).padStart(32, '0'));
  return toDataFrame({
    fields: [
      { name: 'time', type: FieldType.time, values: keys.map((_, i) => 1700000000000 - i * 1000) },
      { name: 'node', type: FieldType.string, values: keys.map(() => 'edge-1') },
      { name: 'confidence', type: FieldType.number, values: keys.map((_, i) => 0.5 + i / (2 * n)) },
      { name: 'predicted_class', type: FieldType.string, values: keys.map((_, i) => `class${i % 10}`) },
      { name: 'label', type: FieldType.string, values: keys.map((_, i) => (i === 1 ? 'shirt' : '')) },
      { name: 'key', type: FieldType.string, values: keys },
      { name: 'thumbnail_url', type: FieldType.string, values: keys.map((k) => `/api/datasources/uid/P0/resources/thumbnail?key=${k}`) },
    ],
  });
}

function setup(
  n: number,
  post: (model: string, labels: LabelAction[]) => Promise<{ stored: number }>,
  batchSize?: number,
  readOnly?: boolean
) {
  const postLabels = jest.fn(post);
  const datasource = { postLabels } as unknown as DataSource;
  render(<SampleReview frames={[samples(n)]} model="fashion" datasource={datasource} batchSize={batchSize} readOnly={readOnly} />);
  const grid = screen.getByRole('grid', { name: 'Samples to review' });
  const cell = (i: number) => screen.getAllByRole('gridcell')[i];
  return { postLabels, grid, cell };
}

describe('SampleReview', () => {
  test('reads the samples frame; nothing without one', () => {
    const tiles = readTiles([toDataFrame({ fields: [{ name: 'model', values: ['m'] }] }), samples(3)]);
    expect(tiles).toHaveLength(3);
    expect(tiles[1]).toEqual({
      key: '00000000000000000000000000000001',
      thumbnail: '/api/datasources/uid/P0/resources/thumbnail?key=00000000000000000000000000000001',
      predicted: 'class1',
      confidence: 0.5 + 1 / 6,
      label: 'shirt',
    });
    expect(readTiles([])).toEqual([]);
    const { container } = render(<SampleReview frames={[]} model="m" datasource={{} as DataSource} />);
    expect(container).toBeEmptyDOMElement();
  });

  test('shows each sample’s thumbnail, prediction and label', () => {
    setup(3, () => Promise.resolve({ stored: 0 }));
    const imgs = screen.getAllByRole('img');
    expect(imgs).toHaveLength(3);
    expect(imgs[2]).toHaveAttribute('src', '/api/datasources/uid/P0/resources/thumbnail?key=00000000000000000000000000000002');
    expect(screen.getByText('shirt')).toBeInTheDocument();
    expect(screen.getByText('class0 0.50')).toBeInTheDocument();
  });

  test('keys label, move and take back; Enter sends one batch', async () => {
    const { postLabels, grid, cell } = setup(4, (_, labels) => Promise.resolve({ stored: labels.length }));
    expect(cell(0)).toHaveAttribute('aria-selected', 'true');
    fireEvent.keyDown(grid, { key: '3' }); // sample 0 → 3, select 1
    expect(cell(1)).toHaveAttribute('aria-selected', 'true');
    fireEvent.keyDown(grid, { key: 'ArrowRight' }); // select 2
    fireEvent.keyDown(grid, { key: '7' }); // sample 2 → 7, select 3
    fireEvent.keyDown(grid, { key: '1' }); // sample 3 → 1, stays on the last
    fireEvent.keyDown(grid, { key: 'Backspace' }); // sample 3 taken back
    fireEvent.keyDown(grid, { key: 'ArrowLeft' });
    fireEvent.keyDown(grid, { key: 'ArrowLeft' });
    expect(cell(1)).toHaveAttribute('aria-selected', 'true');
    fireEvent.keyDown(grid, { key: 'x' }); // not a shortcut: nothing
    expect(screen.getByText('→ 3')).toBeInTheDocument();
    expect(screen.getByText('→ 7')).toBeInTheDocument();
    expect(screen.queryByText('→ 1')).not.toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Send 2 labels' })).toBeEnabled();
    expect(postLabels).not.toHaveBeenCalled();

    fireEvent.keyDown(grid, { key: 'Enter' });
    await screen.findByText('2 labels stored');
    expect(postLabels).toHaveBeenCalledTimes(1);
    expect(postLabels).toHaveBeenCalledWith('fashion', [
      { key: '00000000000000000000000000000000', label: 3 },
      { key: '00000000000000000000000000000002', label: 7 },
    ]);
    expect(screen.getByRole('button', { name: 'Send 0 labels' })).toBeDisabled();
    expect(screen.queryByText('→ 3')).not.toBeInTheDocument();
  });

  test('labels go in batches; a failed batch keeps its labels pending and says why', async () => {
    const n = 12;
    let calls = 0;
    const { postLabels, grid } = setup(
      n,
      (_, labels) => {
        calls++;
        return calls === 1 ? Promise.resolve({ stored: labels.length }) : Promise.reject({ status: 403, data: { error: 'label: your Grafana role Viewer may not act' } });
      },
      5
    );
    for (let i = 0; i < n; i++) {
      fireEvent.keyDown(grid, { key: String(i % 10) });
    }
    fireEvent.click(screen.getByRole('button', { name: `Send ${n} labels` }));
    await screen.findByText('5 labels stored, then: label: your Grafana role Viewer may not act');
    expect(postLabels).toHaveBeenCalledTimes(2);
    expect(postLabels.mock.calls[0][1]).toHaveLength(5);
    expect(postLabels.mock.calls[1][1]).toHaveLength(5);
    expect(postLabels.mock.calls[1][1][0]).toEqual({ key: '00000000000000000000000000000005', label: 5 });
    // The first batch is stored and no longer pending; the other seven are.
    await waitFor(() => expect(screen.getByRole('button', { name: 'Send 7 labels' })).toBeEnabled());
  });

  test('read-only: arrows move, labelling keys do nothing, no send button', () => {
    const { postLabels, grid, cell } = setup(3, () => Promise.resolve({ stored: 0 }), undefined, true);
    fireEvent.keyDown(grid, { key: 'ArrowRight' });
    expect(cell(1)).toHaveAttribute('aria-selected', 'true');
    fireEvent.keyDown(grid, { key: '3' });
    fireEvent.keyDown(grid, { key: 'Enter' });
    expect(cell(1)).toHaveAttribute('aria-selected', 'true');
    expect(screen.queryByText('→ 3')).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: /Send/ })).not.toBeInTheDocument();
    expect(screen.getByText(/Your role may not label/)).toBeInTheDocument();
    expect(postLabels).not.toHaveBeenCalled();
  });
});
