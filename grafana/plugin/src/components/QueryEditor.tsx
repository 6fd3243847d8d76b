import React, { ChangeEvent, useEffect, useState } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { Alert, InlineField, InlineFieldRow, Input, RadioButtonGroup } from '@grafana/ui';

import { DataSource, fieldsFor } from '../datasource';
import { SampleReview } from './SampleReview';
import {
  CatalogGroupBy,
  DEFAULT_SAMPLE_LIMIT,
  EdgeloopOptions,
  EdgeloopQuery,
  JOB_PHASES,
  MAX_SAMPLE_LIMIT,
  QUERY_FIELDS,
  QUERY_TYPES,
  QueryField,
  QueryType,
} from '../types';

/** Props of the query editor. */
export type Props = QueryEditorProps<DataSource, EdgeloopQuery, EdgeloopOptions>;

const LABEL_WIDTH = 16;

const GROUP_BY: Array<SelectableValue<CatalogGroupBy>> = [
  { label: 'None', value: '' },
  { label: 'Reason', value: 'reason' },
  { label: 'Class', value: 'class' },
];

type TextKey = 'model' | 'version' | 'node' | 'reason' | 'phase';
type NumberKey = 'minConfidence' | 'maxConfidence' | 'limit';

/**
 * QueryEditor edits a query of any of the backend's types (docs/grafana-plugin.md "Queries"):
 * the type, then that type's fields only, with the JSON names the backend reads. Changing the
 * type drops the fields the new type does not read. Text fields change the query as one types
 * and run it when the field loses focus; choices run it at once. Text fields offer their known
 * values (models from the backend, the controller's phases) through a datalist and take any
 * text, so that template variables ($model) work too. A samples query's result is shown below
 * as a SampleReview, to label from the keyboard.
 */
export function QueryEditor({ query, onChange, onRunQuery, datasource, data }: Props) {
  const queryType: QueryType = query.queryType ?? 'catalog';
  const fields = new Set<QueryField>(QUERY_FIELDS[queryType]);
  const models = useModels(datasource);

  const change = (next: EdgeloopQuery, run: boolean) => {
    onChange(next);
    if (run) {
      onRunQuery();
    }
  };

  const set = (key: QueryField, value: unknown, run: boolean) => {
    const next: Record<string, unknown> = { ...query, queryType };
    if (value === undefined || value === '') {
      delete next[key];
    } else {
      next[key] = value;
    }
    change(next as unknown as EdgeloopQuery, run);
  };

  const text = (key: TextKey, label: string, placeholder: string, tooltip: string, list?: string) => (
    <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} htmlFor={`edgeloop-q-${key}`}>
      <Input
        id={`edgeloop-q-${key}`}
        aria-label={label}
        width={24}
        list={list}
        placeholder={placeholder}
        value={query[key] ?? ''}
        onChange={(e: ChangeEvent<HTMLInputElement>) => set(key, e.currentTarget.value.trim(), false)}
        onBlur={onRunQuery}
      />
    </InlineField>
  );

  const number = (key: NumberKey, label: string, placeholder: string, tooltip: string, step: number, max: number) => (
    <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} htmlFor={`edgeloop-q-${key}`}>
      <Input
        id={`edgeloop-q-${key}`}
        aria-label={label}
        type="number"
        width={12}
        min={0}
        max={max}
        step={step}
        placeholder={placeholder}
        value={query[key] ?? ''}
        onChange={(e: ChangeEvent<HTMLInputElement>) => {
          const raw = e.currentTarget.value.trim();
          const n = Number(raw);
          set(key, raw === '' || !Number.isFinite(n) ? undefined : key === 'limit' ? Math.trunc(n) : n, false);
        }}
        onBlur={onRunQuery}
      />
    </InlineField>
  );

  return (
    <>
      <InlineFieldRow>
        <InlineField label="Query type" labelWidth={LABEL_WIDTH} tooltip={QUERY_TYPES.find((t) => t.value === queryType)?.description}>
          <RadioButtonGroup<QueryType>
            aria-label="Query type"
            options={QUERY_TYPES.map(({ value, label, description }) => ({ value, label, description }))}
            value={queryType}
            onChange={(t) => change(fieldsFor(query, t), true)}
          />
        </InlineField>
      </InlineFieldRow>
      <InlineFieldRow>
        {fields.has('model') &&
          text(
            'model',
            'Model',
            queryType === 'samples' ? 'required' : 'every model',
            'The model, as the collector, repository and controller name it; template variables work.',
            'edgeloop-models'
          )}
        {fields.has('version') && text('version', 'Version', 'every version', 'One version of the model.')}
        {fields.has('groupBy') && (
          <InlineField label="Group by" labelWidth={LABEL_WIDTH} tooltip="Counts per version and capture reason or predicted class; needs a model.">
            <RadioButtonGroup<CatalogGroupBy>
              aria-label="Group by"
              options={GROUP_BY}
              value={query.groupBy ?? ''}
              onChange={(g) => set('groupBy', g, true)}
            />
          </InlineField>
        )}
        {fields.has('phase') && text('phase', 'Phase', 'any phase', 'Only jobs in this phase (preparing, running, ..., promoted, rejected).', 'edgeloop-phases')}
      </InlineFieldRow>
      {queryType === 'samples' && (
        <InlineFieldRow>
          {text('node', 'Node', 'every node', 'Only samples from this edge node.')}
          {text('reason', 'Reason', 'every reason', 'Only samples captured for this reason (the sampler strategy’s name).')}
          {number('minConfidence', 'Min confidence', '0', 'Only samples whose top score is at least this (0–1).', 0.01, 1)}
          {number('maxConfidence', 'Max confidence', '1', 'Only samples whose top score is at most this (0–1).', 0.01, 1)}
          {number('limit', 'Limit', String(DEFAULT_SAMPLE_LIMIT), `Newest samples kept (at most ${MAX_SAMPLE_LIMIT}).`, 1, MAX_SAMPLE_LIMIT)}
        </InlineFieldRow>
      )}
      {queryType === 'samples' && !query.model && (
        <Alert severity="info" title="The samples query needs a model">
          It runs once a model is set.
        </Alert>
      )}
      {queryType === 'catalog' && query.groupBy && !query.model && (
        <Alert severity="warning" title="Group by needs a model" />
      )}
      {queryType === 'samples' && query.model && data?.series && (
        <SampleReview frames={data.series} model={query.model} datasource={datasource} />
      )}
      <datalist id="edgeloop-phases">
        {JOB_PHASES.map((p) => (
          <option key={p} value={p} />
        ))}
      </datalist>
      <datalist id="edgeloop-models">
        {models.map((m) => (
          <option key={m} value={m} />
        ))}
      </datalist>
    </>
  );
}

/** useModels asks the backend once for the model names it knows; none when it cannot answer. */
function useModels(datasource: DataSource): string[] {
  const [models, setModels] = useState<string[]>([]);
  useEffect(() => {
    let live = true;
    datasource
      .getModels()
      .then((ans) => live && setModels(ans.models ?? []))
      // Only a convenience: the field takes any name without it, so a failure leaves the list empty.
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [datasource]);
  return models;
}
