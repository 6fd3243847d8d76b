import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { DataSource } from './datasource';
import { EdgeloopOptions, EdgeloopQuery } from './types';

/** plugin is what Grafana loads from dist/module.js: the data source and its editors. */
export const plugin = new DataSourcePlugin<DataSource, EdgeloopQuery, EdgeloopOptions>(DataSource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
