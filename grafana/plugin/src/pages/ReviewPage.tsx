import React, { useMemo, useState } from 'react';
import { PluginPage } from '@grafana/runtime';
import { Alert, InlineFieldRow, LoadingPlaceholder } from '@grafana/ui';

import { SampleReview } from '../components/SampleReview';
import { canAct } from '../app/common';
import { DataSourceBar, useDataSource, useModels } from '../app/DataSourceBar';
import { NumberFilter, RangeFilter, TextFilter } from '../app/Filters';
import { useQuery } from '../app/useQuery';
import { EdgeloopQuery } from '../types';

/** ReviewFilters are the review page's filters, the samples query's fields. */
export interface ReviewFilters {
  model: string;
  node: string;
  reason: string;
  minConfidence?: number;
  maxConfidence?: number;
  limit?: number;
}

/**
 * ReviewPage is the app's sample review: the newest samples of a model, filtered by node,
 * reason and confidence range over a time range, as thumbnails to label from the keyboard
 * (the query editor's SampleReview, the same component). Users whose role the data source does
 * not let act see the thumbnails without the labelling.
 */
export function ReviewPage() {
  const source = useDataSource();
  const models = useModels(source.ds);
  const [filters, setFilters] = useState<ReviewFilters>({ model: '', node: '', reason: '' });
  const [last, setLast] = useState('24h');
  const query = useMemo((): Omit<EdgeloopQuery, 'refId'> | undefined => {
    if (!filters.model) {
      return undefined;
    }
    const q: Omit<EdgeloopQuery, 'refId'> = { queryType: 'samples', model: filters.model };
    for (const k of ['node', 'reason'] as const) {
      if (filters[k]) {
        q[k] = filters[k];
      }
    }
    for (const k of ['minConfidence', 'maxConfidence', 'limit'] as const) {
      if (filters[k] !== undefined) {
        q[k] = filters[k];
      }
    }
    return q;
  }, [filters]);
  const result = useQuery(source.ds, query, last);
  const set = (patch: Partial<ReviewFilters>) => setFilters({ ...filters, ...patch });
  const act = canAct(source.ds);

  return (
    <PluginPage>
      <DataSourceBar source={source} />
      <InlineFieldRow>
        <TextFilter label="Model" value={filters.model} options={models} onCommit={(model) => set({ model })} />
        <TextFilter label="Node" value={filters.node} onCommit={(node) => set({ node })} placeholder="any" />
        {/* Reasons are the exporters' strategy names (docs/sampler.md), so any text. */}
        <TextFilter label="Reason" value={filters.reason} onCommit={(reason) => set({ reason })} placeholder="any" />
      </InlineFieldRow>
      <InlineFieldRow>
        <NumberFilter label="Confidence ≥" value={filters.minConfidence} min={0} max={1} step={0.05} onCommit={(minConfidence) => set({ minConfidence })} />
        <NumberFilter label="Confidence ≤" value={filters.maxConfidence} min={0} max={1} step={0.05} onCommit={(maxConfidence) => set({ maxConfidence })} />
        <NumberFilter label="Limit" value={filters.limit} min={1} max={10000} step={1} onCommit={(limit) => set({ limit })} />
        <RangeFilter value={last} onChange={setLast} />
      </InlineFieldRow>
      {!filters.model && <Alert severity="info" title="Choose a model to review its samples" />}
      {!act && source.ds && (
        <Alert severity="info" title="Your role may look but not label">
          The data source lets {source.ds.allowedRoles.join(', ') || 'nobody'} label
          (jsonData.allowedRoles).
        </Alert>
      )}
      {result.error && <Alert severity="error" title={result.error} />}
      {result.loading && <LoadingPlaceholder text="Loading samples…" />}
      {source.ds && filters.model && !result.loading && !result.error && result.frames[0]?.length === 0 && (
        <Alert severity="info" title="No samples match" />
      )}
      {source.ds && filters.model && (
        <SampleReview frames={result.frames} model={filters.model} datasource={source.ds} readOnly={!act} />
      )}
    </PluginPage>
  );
}
