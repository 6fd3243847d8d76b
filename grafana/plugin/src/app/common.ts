import {
  DataFrame,
  DataQueryRequest,
  dateTime,
  TimeRange,
} from '@grafana/data';
import { config, getDataSourceSrv } from '@grafana/runtime';
import { lastValueFrom } from 'rxjs';

import { DataSource } from '../datasource';
import { EdgeloopQuery } from '../types';

/** APP_ID is the app plugin's id (src/plugin.json); its pages live under /a/APP_ID/. */
export const APP_ID = 'edgeloop-edgeloop-app';

/** DATASOURCE_TYPE is the nested data source's id (src/datasource/plugin.json), the only type the pages use. */
export const DATASOURCE_TYPE = 'edgeloop-edgeloop-datasource';

/** ACTIVE_PHASES are the job phases a cancel can still stop (retrain/state.go: not Done). */
export const ACTIVE_PHASES = ['preparing', 'running', 'evaluating', 'publishing', 'soaking'];

/** RANGES are the time ranges the pages offer, as Grafana's relative "now-…" strings. */
export const RANGES = [
  { label: '1h', value: '1h' },
  { label: '6h', value: '6h' },
  { label: '24h', value: '24h' },
  { label: '7d', value: '7d' },
  { label: '30d', value: '30d' },
];

const UNIT_MS: Record<string, number> = { h: 3600e3, d: 86400e3 };

/** timeRange is the range from `last` (RANGES' values: 6h, 7d) before now to now. */
export function timeRange(last: string, now = Date.now()): TimeRange {
  const m = /^(\d+)([hd])$/.exec(last);
  const span = m ? Number(m[1]) * UNIT_MS[m[2]] : 24 * 3600e3;
  const from = dateTime(now - span);
  const to = dateTime(now);
  return { from, to, raw: { from: `now-${last}`, to: 'now' } };
}

/**
 * runQuery runs one query of the data source over range and returns its frames. It goes the
 * way a panel's query goes (DataSourceWithBackend.query: POST /api/ds/query), so the page sees
 * exactly what a panel would; an error of the backend is thrown with its message.
 */
export async function runQuery(ds: DataSource, query: Omit<EdgeloopQuery, 'refId'>, range: TimeRange): Promise<DataFrame[]> {
  const request = {
    app: APP_ID,
    requestId: `${APP_ID}-${query.queryType}`,
    interval: '1m',
    intervalMs: 60000,
    maxDataPoints: 1000,
    range,
    scopedVars: {},
    startTime: Date.now(),
    targets: [{ ...query, refId: 'A' }],
    timezone: 'browser',
  } as unknown as DataQueryRequest<EdgeloopQuery>;
  const rsp = await lastValueFrom(ds.query(request));
  const err = rsp.errors?.[0];
  if (err) {
    throw new Error(err.message ?? String(err.data?.message ?? 'query failed'));
  }
  return rsp.data as DataFrame[];
}

/** Row is one row of a frame, by field name. */
export type Row = Record<string, unknown>;

/** frameRows turns the first frame's columns into rows (the pages' tables want rows). */
export function frameRows(frames: DataFrame[]): Row[] {
  const f = frames[0];
  if (!f) {
    return [];
  }
  const rows: Row[] = [];
  for (let i = 0; i < f.length; i++) {
    const row: Row = {};
    for (const field of f.fields) {
      row[field.name] = field.values[i];
    }
    rows.push(row);
  }
  return rows;
}

/** userRole is the signed-in user's organisation role (Viewer, Editor, Admin) as Grafana's boot data says. */
export function userRole(): string {
  return config.bootData?.user?.orgRole ?? '';
}

/**
 * canAct says whether the user's role is one the data source lets act (its public
 * jsonData.allowedRoles, default Editor and Admin): the pages hide the actions otherwise. The
 * backend checks the role again on every action (docs/grafana-plugin.md "Roles and logging"),
 * so hiding is for the user's sake, not the only guard.
 */
export function canAct(ds: DataSource | undefined, role = userRole()): boolean {
  if (!ds || role === '') {
    return false;
  }
  return ds.allowedRoles.includes(role);
}

/** firstDataSource is the uid of the default edgeloop data source, else the first one, else undefined. */
export function firstDataSource(): string | undefined {
  const list = getDataSourceSrv().getList({ type: DATASOURCE_TYPE });
  return (list.find((d) => d.isDefault) ?? list[0])?.uid;
}

/** errorText is the message of a failed request: the backend's {"error"}, Grafana's {"message"} or the error's own. */
export function errorText(err: unknown): string {
  const e = err as { data?: { error?: string; message?: string }; message?: string };
  return e?.data?.error ?? e?.data?.message ?? e?.message ?? String(err);
}

/** formatTime shows a frame's time value (ms since the epoch) as an ISO date and time, '' when null. */
export function formatTime(v: unknown): string {
  if (typeof v !== 'number' && !(v instanceof Date)) {
    return '';
  }
  return new Date(v).toISOString().replace('T', ' ').slice(0, 19);
}
