import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from '../components/ConfigEditor';
import { QueryEditor } from '../components/QueryEditor';
import { DataSource } from '../datasource';
import { EdgeloopOptions, EdgeloopQuery } from '../types';

/** plugin is what Grafana loads from dist/datasource/module.js: the data source (nested in the app) and its editors. */
export const plugin = new DataSourcePlugin<DataSource, EdgeloopQuery, EdgeloopOptions>(DataSource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
