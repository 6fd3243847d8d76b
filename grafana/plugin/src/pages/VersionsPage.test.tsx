import React from 'react';
import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { FieldType, toDataFrame } from '@grafana/data';

import { VersionsPage, lineage, moveVerb } from './VersionsPage';
import { fakeGrafana, resourceCalls } from '../app/testkit';

/**
 * versions is a versions frame as the backend makes it: fashion 1 to 4 (2 and 3 retrained from
 * 1, 4 from 3), stable at 3, canary and latest at 4; digits 1 with no parent.
 */
function versions() {
  const t = Date.UTC(2026, 11, 1);
  return toDataFrame({
    name: 'versions',
    fields: [
      { name: 'created', type: FieldType.time, values: [t + 4, t + 3, t + 2, t + 1, t] },
      { name: 'model', type: FieldType.string, values: ['fashion', 'fashion', 'fashion', 'fashion', 'digits'] },
      { name: 'version', type: FieldType.number, values: [4, 3, 2, 1, 1] },
      { name: 'parent_version', type: FieldType.number, values: [3, 1, 1, null, null] },
      { name: 'aliases', type: FieldType.string, values: ['canary', 'stable', '', '', 'stable'] },
      { name: 'latest', type: FieldType.boolean, values: [true, false, false, false, true] },
      { name: 'accuracy', type: FieldType.number, values: [0.91, 0.88, 0.85, 0.8, null] },
      { name: 'metrics', type: FieldType.string, values: ['{}', '{}', '{}', '{}', '{}'] },
      { name: 'classes', type: FieldType.number, values: [10, 10, 10, 10, 10] },
      { name: 'signed', type: FieldType.boolean, values: [true, true, true, true, false] },
      { name: 'datasets', type: FieldType.number, values: [2, 1, 1, 1, 1] },
    ],
  });
}

/**
 * row finds the table row of a model's version. It reads the DOM directly: Testing Library's
 * role queries compute every element's role and name, which takes seconds on a table in jsdom.
 */
function row(model: string, version: number): HTMLElement {
  const r = rows().find((tr) => {
    const cells = tr.querySelectorAll('td');
    return cells[0]?.textContent === model && cells[1]?.textContent === String(version);
  });
  if (!r) {
    throw new Error(`no row ${model} ${version}`);
  }
  return r;
}

/** rows are the table's rows, the header's included. */
function rows(): HTMLElement[] {
  return Array.from(document.querySelectorAll('tr'));
}

// Grafana's table and modal render slowly in jsdom on a shared two-core machine.
jest.setTimeout(60000);

describe('VersionsPage', () => {
  test('shows versions with lineage, aliases and metrics', async () => {
    const b = fakeGrafana({ role: 'Viewer', frames: { versions: versions() } });
    render(<VersionsPage />);
    await screen.findByText('4 ← 3 ← 1');
    expect(rows()).toHaveLength(6);
    const v4 = within(row('fashion', 4));
    expect(v4.getByText('canary')).toBeInTheDocument();
    expect(v4.getByText('latest')).toBeInTheDocument();
    expect(v4.getByText('0.9100')).toBeInTheDocument();
    expect(within(row('fashion', 3)).getByText('stable')).toBeInTheDocument();
    expect(within(row('fashion', 2)).getByText('2 ← 1')).toBeInTheDocument();
    expect(within(row('digits', 1)).getByText('no')).toBeInTheDocument(); // unsigned
    expect((b.queries[0].queries as Array<Record<string, unknown>>)[0]).toMatchObject({ queryType: 'versions' });
  });

  test('Viewers cannot move aliases', async () => {
    fakeGrafana({ role: 'Viewer', frames: { versions: versions() } });
    render(<VersionsPage />);
    await screen.findByText('4 ← 3 ← 1');
    expect(screen.queryAllByLabelText(/Move an alias/)).toHaveLength(0);
  });

  test('an Editor rolls stable back through the aliases resource', async () => {
    const bodies: unknown[] = [];
    const b = fakeGrafana({
      role: 'Editor',
      frames: { versions: versions() },
      resources: {
        'POST aliases': (body) => {
          bodies.push(body);
          return { data: { version: 1, previous: 3, sequence: 7, signed: true, changed: true } };
        },
      },
    });
    render(<VersionsPage />);
    await screen.findByText('4 ← 3 ← 1');
    await userEvent.click(screen.getByLabelText('Move an alias of fashion to 1'));
    expect(screen.getByText('stable is at 3.')).toBeInTheDocument();
    fireEvent.change(screen.getByLabelText('Reason'), { target: { value: 'v3 misreads shirts' } });
    await userEvent.click(screen.getByText('Roll back stable to 1'));
    expect(await screen.findByText('fashion stable → 1 (was 3)')).toBeInTheDocument();
    expect(bodies).toEqual([{ model: 'fashion', alias: 'stable', version: 1, reason: 'v3 misreads shirts' }]);
    expect(resourceCalls(b)).toContain('POST aliases');
    await waitFor(() => expect(b.queries).toHaveLength(2)); // read again after the move
  });

  test('an Admin promotes canary; a refusal shows the controller’s error', async () => {
    const bodies: unknown[] = [];
    fakeGrafana({
      role: 'Admin',
      frames: { versions: versions() },
      resources: {
        'POST aliases': (body) => {
          bodies.push(body);
          return { status: 409, data: { error: 'version 4 of fashion does not verify' } };
        },
      },
    });
    render(<VersionsPage />);
    await screen.findByText('4 ← 3 ← 1');
    await userEvent.click(screen.getByLabelText('Move an alias of fashion to 4'));
    await userEvent.click(screen.getByLabelText('canary'));
    // canary is already at 4: moving it there again re-signs it.
    expect(screen.getByText('Re-sign canary to 4')).toBeInTheDocument();
    await userEvent.click(screen.getByLabelText('stable'));
    await userEvent.click(screen.getByText('Promote stable to 4'));
    expect(await screen.findByText('fashion stable → 4: version 4 of fashion does not verify')).toBeInTheDocument();
    expect(bodies).toEqual([{ model: 'fashion', alias: 'stable', version: 4, reason: '' }]);
  });

  test('lineage stops at a parent the rows do not hold, and at a loop', () => {
    expect(lineage([{ model: 'm', version: 5, parent_version: 2 }], { model: 'm', version: 5, parent_version: 2 })).toBe('5 ← 2');
    const loop = [
      { model: 'm', version: 1, parent_version: 2 },
      { model: 'm', version: 2, parent_version: 1 },
    ];
    expect(lineage(loop, loop[0])).toBe('1 ← 2');
  });

  test.each([
    [undefined, 3, 'Promote'],
    [2, 3, 'Promote'],
    [3, 2, 'Roll back'],
    [3, 3, 'Re-sign'],
  ])('moveVerb(%s, %s) is %s', (cur, to, want) => {
    expect(moveVerb(cur, to)).toBe(want);
  });
});
