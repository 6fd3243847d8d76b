// The frontend's names must be the backend's: jsonData is read strictly (an unknown key fails
// the data source), and a query field the backend does not know is silently ignored. These
// tests read the Go source beside this code (pkg/plugin) so that a rename on either side fails
// here rather than in a Grafana nobody can run in the tests.
import fs from 'fs';
import path from 'path';

import { EdgeloopOptions, EdgeloopSecureKey, QUERY_FIELDS, QUERY_TYPES } from './types';

const pkg = path.join(__dirname, '..', 'pkg', 'plugin');

/** structTags returns the json tags of a Go struct's exported fields in a file. */
function structTags(file: string, struct: string): string[] {
  const src = fs.readFileSync(path.join(pkg, file), 'utf8');
  const start = src.indexOf(`type ${struct} struct {`);
  expect(start).toBeGreaterThanOrEqual(0);
  const body = src.slice(start, src.indexOf('\n}\n', start));
  return [...body.matchAll(/^\s+[A-Z]\w*\s[^`\n]*`json:"([^",]+)/gm)].map((m) => m[1]);
}

/** stringConsts returns the values of the Go string constants whose names start with prefix. */
function stringConsts(file: string, prefix: string): string[] {
  const src = fs.readFileSync(path.join(pkg, file), 'utf8');
  return [...src.matchAll(new RegExp(`^\\s+${prefix}\\w*\\s+=\\s+"([^"]+)"`, 'gm'))].map((m) => m[1]);
}

// Every jsonData key the config editor may write, and every secret.
const optionKeys: Array<keyof EdgeloopOptions> = [
  'collectorUrl',
  'controllerUrl',
  'repositoryUrl',
  'allowedRoles',
  'thumbnailCacheEntries',
  'thumbnailCacheBytes',
  'timeoutSeconds',
];
const secureKeys: EdgeloopSecureKey[] = [
  'collectorToken',
  'controllerToken',
  'repositoryToken',
  'repositoryAccessKey',
  'repositorySecretKey',
  'tlsCACert',
];

describe('the backend contract', () => {
  test('jsonData keys are the Settings struct’s json tags', () => {
    expect([...optionKeys].sort()).toEqual(structTags('settings.go', 'Settings').sort());
  });

  test('secure keys are the Secret constants', () => {
    expect([...secureKeys].sort()).toEqual(stringConsts('settings.go', 'Secret').sort());
  });

  test('query fields are the Query struct’s json tags', () => {
    const fields = new Set(Object.values(QUERY_FIELDS).flat());
    expect([...fields].sort()).toEqual(structTags('queries.go', 'Query').sort());
  });

  test('query types are the backend’s, in its order', () => {
    expect(QUERY_TYPES.map((t) => t.value)).toEqual(stringConsts('queries.go', 'Query'));
  });
});

// The bodies DataSource posts (datasource.test.ts checks that it sends exactly these fields);
// the backend refuses unknown fields.
describe('the resources’ request bodies', () => {
  test.each([
    ['LabelsRequest', ['model', 'labels']],
    ['LabelAction', ['key', 'request_id', 'label']],
    ['RetrainRequest', ['model', 'reason', 'force']],
    ['AliasRequest', ['model', 'alias', 'version', 'reason']],
  ])('%s', (struct, fields) => {
    expect([...fields].sort()).toEqual(structTags('resources.go', struct).sort());
  });
});
