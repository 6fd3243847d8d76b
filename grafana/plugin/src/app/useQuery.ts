import { useCallback, useEffect, useState } from 'react';
import { DataFrame } from '@grafana/data';

import { DataSource } from '../datasource';
import { EdgeloopQuery } from '../types';
import { errorText, runQuery, timeRange } from './common';

/** QueryState is a page's query result: its frames, whether it runs, what failed, and a way to run it again. */
export interface QueryState {
  frames: DataFrame[];
  loading: boolean;
  error?: string;
  refresh: () => void;
}

interface Result {
  run: string;
  frames: DataFrame[];
  error?: string;
}

/**
 * useQuery runs query over the last `last` (RANGES) whenever the data source, the query or the
 * range changes, and when refresh is called; a query that is undefined does not run. While a run
 * is under way the last result stays (no flicker on refresh) and loading is true.
 */
export function useQuery(ds: DataSource | undefined, query: Omit<EdgeloopQuery, 'refId'> | undefined, last: string): QueryState {
  const [tick, setTick] = useState(0);
  const [result, setResult] = useState<Result>({ run: '', frames: [] });
  // run names one run: a new object with the same fields is the same query.
  const run = ds && query ? JSON.stringify([ds.uid, query, last, tick]) : '';
  useEffect(() => {
    if (!ds || !query) {
      return;
    }
    let live = true;
    runQuery(ds, query, timeRange(last))
      .then((frames) => live && setResult({ run, frames }))
      .catch((err) => live && setResult({ run, frames: [], error: errorText(err) }));
    return () => {
      live = false;
    };
    // run stands for ds, query, last and tick.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [run]);
  const refresh = useCallback(() => setTick((t) => t + 1), []);
  if (!run) {
    return { frames: [], loading: false, refresh };
  }
  return { frames: result.frames, loading: result.run !== run, error: result.error, refresh };
}
