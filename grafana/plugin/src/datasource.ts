import { CoreApp, DataSourceInstanceSettings, ScopedVars } from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';

import { DEFAULT_ALLOWED_ROLES, DEFAULT_QUERY, EdgeloopOptions, EdgeloopQuery, LabelAction, QUERY_FIELDS } from './types';

/** The query fields that hold text and so may hold template variables ($model). */
const TEXT_FIELDS = ['model', 'version', 'node', 'reason', 'phase'] as const;

/** ModelsAnswer is the models resource's answer: names, and what could not be asked. */
export interface ModelsAnswer {
  models: string[];
  problems?: string[] | null;
}

/**
 * DataSource is the browser's side of the edgeloop data source. Queries, annotations and the
 * health check go to the Go backend (DataSourceWithBackend); the actions go to its resources
 * (docs/grafana-plugin.md "Resources"), which check the user's role themselves.
 */
export class DataSource extends DataSourceWithBackend<EdgeloopQuery, EdgeloopOptions> {
  /** allowedRoles are the roles whose users may act (jsonData.allowedRoles, public; default Editor and Admin). */
  readonly allowedRoles: string[];

  constructor(instanceSettings: DataSourceInstanceSettings<EdgeloopOptions>) {
    super(instanceSettings);
    this.allowedRoles = instanceSettings.jsonData?.allowedRoles ?? DEFAULT_ALLOWED_ROLES;
    // Annotation queries are ordinary queries of the annotation types, edited with the same
    // QueryEditor; the backend's frames carry time, timeEnd, title, text and tags, the field
    // names Grafana turns into annotation events.
    this.annotations = {
      getDefaultQuery: () => ({ queryType: 'versionAnnotations' }),
    };
  }

  getDefaultQuery(_: CoreApp): Partial<EdgeloopQuery> {
    return DEFAULT_QUERY;
  }

  /** filterQuery skips hidden queries and a samples query without a model, which can only fail. */
  filterQuery(query: EdgeloopQuery): boolean {
    if (query.hide) {
      return false;
    }
    return query.queryType !== 'samples' || !!query.model;
  }

  applyTemplateVariables(query: EdgeloopQuery, scopedVars: ScopedVars): EdgeloopQuery {
    return interpolate(query, (s) => getTemplateSrv().replace(s, scopedVars));
  }

  /** getModels lists the model names the collector, repository and controller know. */
  getModels(): Promise<ModelsAnswer> {
    return this.getResource<ModelsAnswer>('models');
  }

  /** thumbnailUrl is the URL of a sample's thumbnail, which a signed-in browser can load. */
  thumbnailUrl(key: string): string {
    return `/api/datasources/uid/${encodeURIComponent(this.uid)}/resources/thumbnail?key=${encodeURIComponent(key)}`;
  }

  /** postLabels labels samples of one model in one request (the labels resource). */
  postLabels(model: string, labels: LabelAction[]): Promise<{ stored: number; object?: string }> {
    return this.postResource('labels', { model, labels });
  }

  /** retrain asks the controller for a retrain of the model (the retrain resource). */
  retrain(model: string, reason: string, force = false): Promise<unknown> {
    return this.postResource('retrain', { model, reason, force });
  }

  /** moveAlias points an alias (stable, canary) of a model at a version: promote, roll back (the aliases resource). */
  moveAlias(model: string, alias: string, version: number, reason: string): Promise<unknown> {
    return this.postResource('aliases', { model, alias, version, reason });
  }

  /** cancelJob cancels a retrain job (the jobs/{id}/cancel resource). */
  cancelJob(id: string): Promise<unknown> {
    return this.postResource(`jobs/${encodeURIComponent(id)}/cancel`);
  }
}

/** interpolate applies replace (the template variables) to the query's text fields. */
export function interpolate(query: EdgeloopQuery, replace: (s: string) => string): EdgeloopQuery {
  const out: EdgeloopQuery = { ...query };
  for (const f of TEXT_FIELDS) {
    const v = out[f];
    if (typeof v === 'string' && v !== '') {
      out[f] = replace(v);
    }
  }
  return out;
}

/** fieldsFor keeps queryType's fields of a query and Grafana's own fields, dropping the rest. */
export function fieldsFor(query: EdgeloopQuery, queryType: EdgeloopQuery['queryType']): EdgeloopQuery {
  const keep = new Set<string>(queryType ? QUERY_FIELDS[queryType] : []);
  const all = new Set<string>(Object.values(QUERY_FIELDS).flat());
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(query)) {
    if (!all.has(k) || keep.has(k)) {
      out[k] = v;
    }
  }
  return { ...(out as unknown as EdgeloopQuery), queryType };
}
