import React from 'react';
import { render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { FieldType, toDataFrame } from '@grafana/data';

import { JobsPage, gateText, retrainText } from './JobsPage';
import { fakeGrafana, resourceCalls } from '../app/testkit';

/** jobs is a jobs frame as the backend makes it: one running job, one promoted, one rejected. */
function jobs() {
  const t = Date.UTC(2026, 11, 7, 12, 0, 0);
  return toDataFrame({
    name: 'jobs',
    fields: [
      { name: 'created', type: FieldType.time, values: [t, t - 3600e3, t - 7200e3] },
      { name: 'id', type: FieldType.string, values: ['job-3', 'job-2', 'job-1'] },
      { name: 'model', type: FieldType.string, values: ['fashion', 'fashion', 'digits'] },
      { name: 'phase', type: FieldType.string, values: ['running', 'promoted', 'rejected'] },
      { name: 'trigger', type: FieldType.string, values: ['alert DriftHigh', 'operator ana: weekly', 'schedule'] },
      { name: 'base_version', type: FieldType.number, values: [4, 3, 1] },
      { name: 'version', type: FieldType.number, values: [null, 4, null] },
      { name: 'gate_promote', type: FieldType.boolean, values: [null, true, false] },
      { name: 'gate_metric', type: FieldType.string, values: ['', 'accuracy', 'accuracy'] },
      { name: 'gate_candidate', type: FieldType.number, values: [null, 0.91, 0.8] },
      { name: 'gate_current', type: FieldType.number, values: [null, 0.88, 0.85] },
      { name: 'gate_reason', type: FieldType.string, values: ['', 'candidate beats current by 0.03', 'candidate worse by 0.05'] },
      { name: 'error', type: FieldType.string, values: ['', '', ''] },
      { name: 'started', type: FieldType.time, values: [t, t - 3600e3, t - 7200e3] },
      { name: 'finished', type: FieldType.time, values: [null, t - 1800e3, t - 5400e3] },
    ],
  });
}

// Grafana's table and modal render slowly in jsdom on a shared two-core machine.
jest.setTimeout(60000);

describe('JobsPage', () => {
  test('shows the jobs query’s rows with phase, trigger, versions and the gate', async () => {
    const b = fakeGrafana({ role: 'Viewer', frames: { jobs: jobs() } });
    render(<JobsPage />);
    expect(await screen.findByText('job-3')).toBeInTheDocument();
    // The DOM directly: role queries take seconds on a table in jsdom.
    const rows = Array.from(document.querySelectorAll('tr'));
    expect(rows).toHaveLength(4); // the header and three jobs
    const promoted = within(rows[2]);
    expect(promoted.getByText('promoted')).toBeInTheDocument();
    expect(promoted.getByText('operator ana: weekly')).toBeInTheDocument();
    expect(promoted.getByText('3 → 4')).toBeInTheDocument();
    expect(promoted.getByText('promote: accuracy 0.9100 vs 0.8800')).toBeInTheDocument();
    expect(promoted.getByText('candidate beats current by 0.03')).toBeInTheDocument();
    expect(within(rows[3]).getByText('reject: accuracy 0.8000 vs 0.8500')).toBeInTheDocument();
    // The page asked the backend for jobs over its range, through the data source.
    expect(b.queries).toHaveLength(1);
    const q = (b.queries[0].queries as Array<Record<string, unknown>>)[0];
    expect(q).toMatchObject({ queryType: 'jobs', refId: 'A', datasource: { uid: 'P0edgeloop', type: 'edgeloop-edgeloop-datasource' } });
    expect(Number(b.queries[0].to) - Number(b.queries[0].from)).toBe(7 * 86400e3);
  });

  test('Viewers see no cancel', async () => {
    fakeGrafana({ role: 'Viewer', frames: { jobs: jobs() } });
    render(<JobsPage />);
    await screen.findByText('job-3');
    expect(screen.queryAllByLabelText(/Cancel job/)).toHaveLength(0);
  });

  test('a role outside allowedRoles sees no cancel, even an Editor', async () => {
    fakeGrafana({ role: 'Editor', frames: { jobs: jobs() }, jsonData: { allowedRoles: ['Admin'] } });
    render(<JobsPage />);
    await screen.findByText('job-3');
    expect(screen.queryAllByLabelText(/Cancel job/)).toHaveLength(0);
  });

  test('an Editor cancels an active job through the cancel resource, then the jobs are read again', async () => {
    const b = fakeGrafana({
      role: 'Editor',
      frames: { jobs: jobs() },
      resources: { 'POST jobs/job-3/cancel': () => ({ status: 202, data: { id: 'job-3', phase: 'cancelled' } }) },
    });
    render(<JobsPage />);
    await screen.findByText('job-3');
    // Only the running job can be cancelled.
    expect(screen.getAllByLabelText(/Cancel job/)).toHaveLength(1);
    await userEvent.click(screen.getByLabelText('Cancel job job-3'));
    await userEvent.click(screen.getByText('Cancel job'));
    expect(await screen.findByText('job job-3 cancelled')).toBeInTheDocument();
    expect(resourceCalls(b)).toContain('POST jobs/job-3/cancel');
    await waitFor(() => expect(b.queries).toHaveLength(2));
  });

  test('a refused cancel shows the backend’s error', async () => {
    fakeGrafana({
      role: 'Admin',
      frames: { jobs: jobs() },
      resources: { 'POST jobs/job-3/cancel': () => ({ status: 409, data: { error: 'job job-3 is done' } }) },
    });
    render(<JobsPage />);
    await screen.findByText('job-3');
    await userEvent.click(screen.getByLabelText('Cancel job job-3'));
    await userEvent.click(screen.getByText('Cancel job'));
    expect(await screen.findByText('cancel job-3: job job-3 is done')).toBeInTheDocument();
  });

  test('an Editor starts a retrain of the filtered model through the retrain resource', async () => {
    const b = fakeGrafana({
      role: 'Editor',
      frames: { jobs: jobs() },
      resources: { 'POST retrain': () => ({ status: 202, data: { started: 'job-4' } }) },
    });
    render(<JobsPage />);
    await screen.findByText('job-3');
    // No model named: nothing to retrain.
    expect(screen.queryAllByLabelText(/^Retrain /)).toHaveLength(0);
    await userEvent.type(screen.getByLabelText('Model'), 'fashion{enter}');
    await userEvent.click(await screen.findByLabelText('Retrain fashion'));
    await userEvent.click(screen.getByText('Retrain fashion'));
    expect(await screen.findByText('retrain of fashion: job job-4 started')).toBeInTheDocument();
    expect(resourceCalls(b)).toContain('POST retrain');
    const call = b.calls.find((c) => c.url.endsWith('/resources/retrain'));
    expect(call?.data).toEqual({ model: 'fashion', reason: 'requested on the jobs page', force: false });
  });

  test('Viewers see no retrain', async () => {
    fakeGrafana({ role: 'Viewer', frames: { jobs: jobs() } });
    render(<JobsPage />);
    await screen.findByText('job-3');
    await userEvent.type(screen.getByLabelText('Model'), 'fashion{enter}');
    expect(screen.queryAllByLabelText(/^Retrain /)).toHaveLength(0);
  });

  test.each([
    [{ started: 'job-9' }, 'retrain of m: job job-9 started'],
    [{ skipped: 'cooldown', detail: 'until 12:00' }, 'retrain of m: no job started (cooldown: until 12:00)'],
    [{}, 'retrain of m: no job started'],
  ])('retrainText %j', (answer, want) => {
    expect(retrainText('m', answer)).toBe(want);
  });

  test('filters go into the query', async () => {
    const b = fakeGrafana({ role: 'Viewer', frames: { jobs: jobs() } });
    render(<JobsPage />);
    await screen.findByText('job-3');
    await userEvent.type(screen.getByLabelText('Model'), 'fashion{enter}');
    await userEvent.type(screen.getByLabelText('Phase'), 'running{enter}');
    await waitFor(() => expect(b.queries).toHaveLength(3));
    expect((b.queries[2].queries as Array<Record<string, unknown>>)[0]).toMatchObject({ queryType: 'jobs', model: 'fashion', phase: 'running' });
  });

  test('a failed query shows its error', async () => {
    fakeGrafana({ role: 'Viewer', frames: {} });
    render(<JobsPage />);
    expect(await screen.findByText(/no jobs here/)).toBeInTheDocument();
  });

  test.each([
    [{ gate_promote: null }, ''],
    [{ gate_promote: true, gate_metric: '' }, 'promote'],
    [{ gate_promote: false, gate_metric: 'f1', gate_candidate: 0.5, gate_current: null }, 'reject: f1 0.5000 vs –'],
  ])('gateText %j', (row, want) => {
    expect(gateText(row)).toBe(want);
  });
});
