import { DataQuery, DataSourceJsonData } from '@grafana/schema';

/**
 * The query types of the backend (pkg/plugin/queries.go, docs/grafana-plugin.md "Queries").
 */
export type QueryType =
  | 'samples'
  | 'catalog'
  | 'jobs'
  | 'decisions'
  | 'versions'
  | 'versionAnnotations'
  | 'jobAnnotations';

/** CatalogGroupBy breaks catalog counts down per version and reason or predicted class ('' : none). */
export type CatalogGroupBy = '' | 'reason' | 'class';

/**
 * EdgeloopQuery is a panel's or an annotation's query: Grafana's own fields and the fields of
 * the backend's Query (queries.go), with the same JSON names. Each query type reads only its
 * own fields (QUERY_FIELDS); the editor drops the others when the type changes.
 */
export interface EdgeloopQuery extends DataQuery {
  queryType?: QueryType;
  /** Model restricts to one model; the samples query needs it. */
  model?: string;
  /** Version restricts samples and catalog to one version. */
  version?: string;
  /** Node and reason filter samples. */
  node?: string;
  reason?: string;
  /** MinConfidence and maxConfidence filter samples by their top score (0–1). */
  minConfidence?: number;
  maxConfidence?: number;
  /** Phase filters jobs and job annotations. */
  phase?: string;
  /** GroupBy breaks catalog counts down; it needs a model. */
  groupBy?: CatalogGroupBy;
  /** Limit bounds the rows of samples (0 or unset: 100; at most 10,000). */
  limit?: number;
}

/** The query fields besides queryType, in the order the editor shows them. */
export type QueryField = Exclude<keyof EdgeloopQuery, keyof DataQuery>;

/** QUERY_FIELDS are the fields each query type reads (queries.go and the docs' table). */
export const QUERY_FIELDS: Record<QueryType, QueryField[]> = {
  samples: ['model', 'version', 'node', 'reason', 'minConfidence', 'maxConfidence', 'limit'],
  catalog: ['model', 'version', 'groupBy'],
  jobs: ['model', 'phase'],
  decisions: ['model'],
  versions: ['model'],
  versionAnnotations: ['model'],
  jobAnnotations: ['model', 'phase'],
};

/** QUERY_TYPES describe each query type for the editor's select. */
export const QUERY_TYPES: Array<{ value: QueryType; label: string; description: string }> = [
  { value: 'samples', label: 'Samples', description: 'captured samples with thumbnails, newest first (needs a model)' },
  { value: 'catalog', label: 'Catalog', description: 'shards, samples and bytes per model, version, reason or class' },
  { value: 'jobs', label: 'Jobs', description: 'retrain jobs overlapping the time range, with the gate’s verdict' },
  { value: 'decisions', label: 'Decisions', description: 'the controller’s verdicts on retrain triggers' },
  { value: 'versions', label: 'Versions', description: 'model versions with lineage, aliases and metrics' },
  { value: 'versionAnnotations', label: 'Version annotations', description: 'one annotation per published version' },
  { value: 'jobAnnotations', label: 'Job annotations', description: 'one region per retrain job' },
];

/** JOB_PHASES are the retrain controller's job phases (retrain/state.go), in order. */
export const JOB_PHASES = [
  'preparing',
  'running',
  'evaluating',
  'publishing',
  'soaking',
  'promoted',
  'rejected',
  'failed',
  'timed_out',
  'cancelled',
  'error',
];

/** The backend's bounds on limit (queries.go). */
export const DEFAULT_SAMPLE_LIMIT = 100;
export const MAX_SAMPLE_LIMIT = 10000;

/** DEFAULT_QUERY is a new query: the catalog, which needs no model. */
export const DEFAULT_QUERY: Partial<EdgeloopQuery> = { queryType: 'catalog' };

/** GRAFANA_ROLES are the organisation roles allowedRoles may hold. */
export const GRAFANA_ROLES = ['Viewer', 'Editor', 'Admin'];

/**
 * EdgeloopOptions is the data source's jsonData (settings.go). The backend reads it strictly:
 * a key not listed here is an error, so the config editor writes only these.
 */
export interface EdgeloopOptions extends DataSourceJsonData {
  collectorUrl?: string;
  controllerUrl?: string;
  repositoryUrl?: string;
  allowedRoles?: string[];
  thumbnailCacheEntries?: number;
  thumbnailCacheBytes?: number;
  timeoutSeconds?: number;
}

/** The backend's jsonData defaults (settings.go). */
export const DEFAULT_ALLOWED_ROLES = ['Editor', 'Admin'];
export const DEFAULT_THUMBNAIL_CACHE_ENTRIES = 1000;
export const DEFAULT_THUMBNAIL_CACHE_BYTES = 64 << 20;
export const DEFAULT_TIMEOUT_SECONDS = 30;

/**
 * EdgeloopSecureKey names a secureJsonData key. Grafana encrypts these and sends them only to
 * the backend; the browser learns whether each is set (secureJsonFields), never its value.
 */
export type EdgeloopSecureKey =
  | 'collectorToken'
  | 'controllerToken'
  | 'repositoryToken'
  | 'repositoryAccessKey'
  | 'repositorySecretKey'
  | 'tlsCACert';

/** EdgeloopSecureJsonData is what the config editor may write into secureJsonData. */
export type EdgeloopSecureJsonData = Partial<Record<EdgeloopSecureKey, string>>;

/** LabelAction is one label of the labels resource: a sample by key and its class (index or name). */
export interface LabelAction {
  key?: string;
  request_id?: string;
  label: number | string;
}
