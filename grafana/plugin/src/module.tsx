import { AppPlugin } from '@grafana/data';

import { App } from './app/App';

/**
 * plugin is what Grafana loads from dist/module.js: the edgeloop app, whose pages are the
 * sample review, jobs and versions. The data source is a plugin of its own nested in the app
 * (datasource/module.ts, dist/datasource/), which Grafana loads beside it.
 */
export const plugin = new AppPlugin<{}>().setRootPage(App);
