import React, { useMemo, useState } from 'react';
import { PluginPage } from '@grafana/runtime';
import {
  Alert,
  Badge,
  Button,
  Field,
  InlineFieldRow,
  Input,
  InteractiveTable,
  LoadingPlaceholder,
  Modal,
  RadioButtonGroup,
  Stack,
} from '@grafana/ui';

import { canAct, errorText, formatTime, frameRows, Row } from '../app/common';
import { DataSourceBar, useDataSource, useModels } from '../app/DataSourceBar';
import { TextFilter } from '../app/Filters';
import { useQuery } from '../app/useQuery';
import { EdgeloopQuery } from '../types';

/** ALIASES are the aliases an operator moves from here (retrain.md, "Aliases"). */
const ALIASES = ['stable', 'canary'];

/** aliasesOf splits the versions frame's aliases column (canary,stable). */
export function aliasesOf(r: Row): string[] {
  return String(r.aliases ?? '')
    .split(',')
    .filter((a) => a !== '');
}

/**
 * lineage is a version's ancestry as far as the rows show it: 4 ← 3 ← 1, from parent_version
 * (the version a retrain started from). A parent the rows do not hold ends the chain with it.
 */
export function lineage(rows: Row[], r: Row): string {
  const byVersion = new Map(rows.filter((x) => x.model === r.model).map((x) => [x.version, x]));
  const chain = [String(r.version)];
  const seen = new Set([r.version]);
  let parent = r.parent_version;
  while (parent !== null && parent !== undefined && !seen.has(parent)) {
    chain.push(String(parent));
    seen.add(parent);
    parent = byVersion.get(parent)?.parent_version;
  }
  return chain.join(' ← ');
}

/** aliasVersion is the version an alias of a model points at in the rows, if any. */
function aliasVersion(rows: Row[], model: unknown, alias: string): number | undefined {
  const r = rows.find((x) => x.model === model && aliasesOf(x).includes(alias));
  return typeof r?.version === 'number' ? r.version : undefined;
}

/** moveVerb names a move: a promotion to a newer version than the alias holds, a rollback to an older one. */
export function moveVerb(current: number | undefined, to: number): string {
  if (current === undefined || to > current) {
    return 'Promote';
  }
  return to < current ? 'Roll back' : 'Re-sign';
}

interface Move {
  model: string;
  version: number;
}

/**
 * VersionsPage lists model versions (the versions query) with their lineage, aliases and
 * metrics. Users whose role the data source lets act may move an alias to a version: promote
 * or roll back, through the aliases resource, which the retrain controller signs.
 */
export function VersionsPage() {
  const source = useDataSource();
  const models = useModels(source.ds);
  const [model, setModel] = useState('');
  const query = useMemo((): Omit<EdgeloopQuery, 'refId'> => (model ? { queryType: 'versions', model } : { queryType: 'versions' }), [model]);
  // The versions query lists the newest versions whatever the range (docs/grafana-plugin.md, "Queries").
  const result = useQuery(source.ds, query, '30d');
  const rows = useMemo(() => frameRows(result.frames), [result.frames]);
  const act = canAct(source.ds);
  const [moving, setMoving] = useState<Move | undefined>();
  const [alias, setAlias] = useState('stable');
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | undefined>();

  const move = async () => {
    if (!moving || !source.ds) {
      return;
    }
    setBusy(true);
    try {
      const ans = (await source.ds.moveAlias(moving.model, alias, moving.version, reason)) as { previous?: number; note?: string };
      const from = ans?.previous ? ` (was ${ans.previous})` : '';
      setOutcome({ ok: true, text: `${moving.model} ${alias} → ${moving.version}${from}${ans?.note ? `: ${ans.note}` : ''}` });
      setMoving(undefined);
      setReason('');
      result.refresh();
    } catch (err) {
      setOutcome({ ok: false, text: `${moving.model} ${alias} → ${moving.version}: ${errorText(err)}` });
      setMoving(undefined);
    } finally {
      setBusy(false);
    }
  };

  type Cell = { row: { original: Row } };
  const columns = [
    { id: 'model', header: 'Model' },
    { id: 'version', header: 'Version' },
    { id: 'created', header: 'Created', cell: ({ row }: Cell) => formatTime(row.original.created) },
    { id: 'lineage', header: 'Lineage', cell: ({ row }: Cell) => lineage(rows, row.original) },
    {
      id: 'aliases',
      header: 'Aliases',
      cell: ({ row }: Cell) => (
        <Stack gap={0.5}>
          {aliasesOf(row.original).map((a) => (
            <Badge key={a} text={a} color={a === 'stable' ? 'green' : 'blue'} />
          ))}
          {row.original.latest ? <Badge text="latest" color="purple" /> : null}
        </Stack>
      ),
    },
    {
      id: 'accuracy',
      header: 'Accuracy',
      cell: ({ row }: Cell) => (typeof row.original.accuracy === 'number' ? row.original.accuracy.toFixed(4) : ''),
    },
    { id: 'classes', header: 'Classes' },
    { id: 'signed', header: 'Signed', cell: ({ row }: Cell) => (row.original.signed ? 'yes' : 'no') },
    ...(act
      ? [
          {
            id: 'actions',
            cell: ({ row }: Cell) => (
              <Button
                size="sm"
                variant="secondary"
                aria-label={`Move an alias of ${row.original.model} to ${row.original.version}`}
                onClick={() => setMoving({ model: String(row.original.model), version: Number(row.original.version) })}
              >
                Move alias here
              </Button>
            ),
          },
        ]
      : []),
  ];

  const current = moving ? aliasVersion(rows, moving.model, alias) : undefined;
  const verb = moving ? moveVerb(current, moving.version) : '';

  return (
    <PluginPage>
      <DataSourceBar source={source} />
      <InlineFieldRow>
        <TextFilter label="Model" value={model} options={models} onCommit={setModel} placeholder="every model" />
        <Button variant="secondary" icon="sync" onClick={result.refresh}>
          Refresh
        </Button>
      </InlineFieldRow>
      {outcome && (
        <Alert severity={outcome.ok ? 'success' : 'error'} title={outcome.text} onRemove={() => setOutcome(undefined)} />
      )}
      {result.error && <Alert severity="error" title={result.error} />}
      {result.loading && <LoadingPlaceholder text="Loading versions…" />}
      {source.ds && !result.loading && !result.error && rows.length === 0 && <Alert severity="info" title="No versions" />}
      {rows.length > 0 && (
        <InteractiveTable columns={columns} data={rows} getRowId={(r: Row) => `${r.model}/${r.version}`} pageSize={50} />
      )}
      {moving && (
        <Modal title={`Move an alias of ${moving.model} to version ${moving.version}`} isOpen onDismiss={() => setMoving(undefined)}>
          <Field label="Alias">
            <RadioButtonGroup options={ALIASES.map((a) => ({ label: a, value: a }))} value={alias} onChange={setAlias} />
          </Field>
          <Field label="Reason" description="Logged by the controller with your Grafana login">
            <Input aria-label="Reason" value={reason} onChange={(e) => setReason(e.currentTarget.value)} />
          </Field>
          <p>
            {alias} is {current === undefined ? 'not set' : `at ${current}`}.
          </p>
          <Modal.ButtonRow>
            <Button variant="secondary" fill="outline" onClick={() => setMoving(undefined)}>
              Cancel
            </Button>
            <Button variant={verb === 'Roll back' ? 'destructive' : 'primary'} disabled={busy} onClick={move}>
              {`${verb} ${alias} to ${moving.version}`}
            </Button>
          </Modal.ButtonRow>
        </Modal>
      )}
    </PluginPage>
  );
}
