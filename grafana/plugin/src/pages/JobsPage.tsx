import React, { useMemo, useState } from 'react';
import { PluginPage } from '@grafana/runtime';
import { Alert, Badge, BadgeColor, Button, ConfirmButton, InlineFieldRow, InteractiveTable, LoadingPlaceholder } from '@grafana/ui';

import { ACTIVE_PHASES, canAct, errorText, formatTime, frameRows, Row } from '../app/common';
import { DataSourceBar, useDataSource, useModels } from '../app/DataSourceBar';
import { RangeFilter, TextFilter } from '../app/Filters';
import { useQuery } from '../app/useQuery';
import { EdgeloopQuery, JOB_PHASES } from '../types';

/** PHASE_COLORS colour a job's phase: running ones blue, good ends green, bad ends red. */
const PHASE_COLORS: Record<string, BadgeColor> = {
  promoted: 'green',
  rejected: 'orange',
  cancelled: 'darkgrey',
  failed: 'red',
  timed_out: 'red',
  error: 'red',
};

/** gateText is the gate's verdict in a line: promote or not, and the metric of candidate against current. */
export function gateText(r: Row): string {
  if (r.gate_promote === null || r.gate_promote === undefined) {
    return '';
  }
  const n = (v: unknown) => (typeof v === 'number' ? v.toFixed(4) : '–');
  const verdict = r.gate_promote ? 'promote' : 'reject';
  return r.gate_metric ? `${verdict}: ${r.gate_metric} ${n(r.gate_candidate)} vs ${n(r.gate_current)}` : verdict;
}

/** retrainText is the controller's answer to a retrain request in a line: the job it started, or why it started none. */
export function retrainText(model: string, answer: unknown): string {
  const d = (answer ?? {}) as { started?: string; skipped?: string; detail?: string };
  if (d.started) {
    return `retrain of ${model}: job ${d.started} started`;
  }
  const why = [d.skipped, d.detail].filter(Boolean).join(': ');
  return `retrain of ${model}: no job started${why ? ` (${why})` : ''}`;
}

/**
 * JobsPage lists the retrain controller's jobs overlapping the time range (the jobs query) with
 * their phase, trigger, versions and the gate's scores and reason. Users whose role the data
 * source lets act may start a retrain of the model the filter names (the retrain resource; the
 * controller's policy still decides, and says why when it starts nothing) and cancel a job
 * that is still active (the jobs/{id}/cancel resource).
 */
export function JobsPage() {
  const source = useDataSource();
  const models = useModels(source.ds);
  const [model, setModel] = useState('');
  const [phase, setPhase] = useState('');
  const [last, setLast] = useState('7d');
  const query = useMemo((): Omit<EdgeloopQuery, 'refId'> => {
    const q: Omit<EdgeloopQuery, 'refId'> = { queryType: 'jobs' };
    if (model) {
      q.model = model;
    }
    if (phase) {
      q.phase = phase;
    }
    return q;
  }, [model, phase]);
  const result = useQuery(source.ds, query, last);
  const rows = useMemo(() => frameRows(result.frames), [result.frames]);
  const act = canAct(source.ds);
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | undefined>();

  const retrain = async () => {
    try {
      const answer = await source.ds!.retrain(model, 'requested on the jobs page');
      setOutcome({ ok: true, text: retrainText(model, answer) });
      result.refresh();
    } catch (err) {
      setOutcome({ ok: false, text: `retrain of ${model}: ${errorText(err)}` });
    }
  };

  const cancel = async (id: string) => {
    try {
      await source.ds!.cancelJob(id);
      setOutcome({ ok: true, text: `job ${id} cancelled` });
      result.refresh();
    } catch (err) {
      setOutcome({ ok: false, text: `cancel ${id}: ${errorText(err)}` });
    }
  };

  const columns = [
    { id: 'created', header: 'Created', cell: ({ row }: { row: { original: Row } }) => formatTime(row.original.created) },
    { id: 'id', header: 'Job' },
    { id: 'model', header: 'Model' },
    {
      id: 'phase',
      header: 'Phase',
      cell: ({ row }: { row: { original: Row } }) => {
        const p = String(row.original.phase);
        return <Badge text={p} color={PHASE_COLORS[p] ?? 'blue'} />;
      },
    },
    { id: 'trigger', header: 'Trigger' },
    {
      id: 'version',
      header: 'Versions',
      cell: ({ row }: { row: { original: Row } }) =>
        `${row.original.base_version ?? '–'} → ${row.original.version ?? '–'}`,
    },
    { id: 'gate', header: 'Gate', cell: ({ row }: { row: { original: Row } }) => gateText(row.original) },
    { id: 'gate_reason', header: 'Gate reason' },
    { id: 'error', header: 'Error' },
    ...(act
      ? [
          {
            id: 'actions',
            cell: ({ row }: { row: { original: Row } }) => {
              const id = String(row.original.id);
              return ACTIVE_PHASES.includes(String(row.original.phase)) ? (
                <ConfirmButton confirmText="Cancel job" confirmVariant="destructive" onConfirm={() => cancel(id)}>
                  <Button size="sm" variant="secondary" aria-label={`Cancel job ${id}`}>
                    Cancel
                  </Button>
                </ConfirmButton>
              ) : null;
            },
          },
        ]
      : []),
  ];

  return (
    <PluginPage>
      <DataSourceBar source={source} />
      <InlineFieldRow>
        <TextFilter label="Model" value={model} options={models} onCommit={setModel} placeholder="any" />
        <TextFilter label="Phase" value={phase} options={JOB_PHASES} onCommit={setPhase} placeholder="any" />
        <RangeFilter value={last} onChange={setLast} />
        <Button variant="secondary" icon="sync" onClick={result.refresh}>
          Refresh
        </Button>
        {act && model && (
          <ConfirmButton confirmText={`Retrain ${model}`} onConfirm={retrain}>
            <Button variant="primary" icon="play" aria-label={`Retrain ${model}`}>
              Retrain
            </Button>
          </ConfirmButton>
        )}
      </InlineFieldRow>
      {outcome && (
        <Alert severity={outcome.ok ? 'success' : 'error'} title={outcome.text} onRemove={() => setOutcome(undefined)} />
      )}
      {result.error && <Alert severity="error" title={result.error} />}
      {result.loading && <LoadingPlaceholder text="Loading jobs…" />}
      {source.ds && !result.loading && !result.error && rows.length === 0 && (
        <Alert severity="info" title="No jobs in this time range" />
      )}
      {rows.length > 0 && (
        <InteractiveTable columns={columns} data={rows} getRowId={(r: Row) => String(r.id)} pageSize={50} />
      )}
    </PluginPage>
  );
}
