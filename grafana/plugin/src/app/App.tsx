import React from 'react';
import { AppRootProps } from '@grafana/data';
import { Route, Routes } from 'react-router-dom-v5-compat';

import { JobsPage } from '../pages/JobsPage';
import { ReviewPage } from '../pages/ReviewPage';
import { VersionsPage } from '../pages/VersionsPage';

/** ROUTES are the pages' paths under /a/edgeloop-edgeloop-app/, as plugin.json's includes name them. */
export const ROUTES = { review: 'review', jobs: 'jobs', versions: 'versions' };

/**
 * App is the app's root page: Grafana renders it for every path under /a/edgeloop-edgeloop-app/
 * and it picks the page, as @grafana/create-plugin's app template does (react-router v6 through
 * react-router-dom-v5-compat, which Grafana 10.4 to 12 provide). The sample review is the default.
 */
export function App(_: AppRootProps) {
  return (
    <Routes>
      <Route path={ROUTES.jobs} element={<JobsPage />} />
      <Route path={ROUTES.versions} element={<VersionsPage />} />
      <Route path="*" element={<ReviewPage />} />
    </Routes>
  );
}
