// Builds the app's src/module.tsx into dist/module.js and the nested data source's
// src/datasource/module.ts into dist/datasource/module.js, the AMD modules Grafana loads:
// @grafana/create-plugin's webpack configuration cut to what this plugin needs (its nested-plugin
// layout: one entry per plugin.json). Grafana provides React, its own packages, the router and a
// few libraries at run time (externals), so the bundles hold only our code. The plugin.json files
// and img/ are copied into dist/ by `make plugin`, which also stamps the version.
const path = require('path');

const pluginId = 'edgeloop-edgeloop-app';

// Modules Grafana provides to plugins (create-plugin's list, as far as this plugin imports them).
const externals = [
  'lodash',
  'moment',
  'emotion',
  '@emotion/react',
  '@emotion/css',
  'react',
  'react/jsx-runtime',
  'react-dom',
  'react-router',
  'react-router-dom',
  'react-router-dom-v5-compat',
  'rxjs',
  /^@grafana\/ui/i,
  /^@grafana\/runtime/i,
  /^@grafana\/data/i,
];

module.exports = (env = {}) => ({
  context: path.join(__dirname, 'src'),
  devtool: env.production ? 'source-map' : 'eval-source-map',
  entry: { module: './module.tsx', 'datasource/module': './datasource/module.ts' },
  externals,
  mode: env.production ? 'production' : 'development',
  module: {
    rules: [
      {
        exclude: /node_modules/,
        test: /\.[tj]sx?$/,
        use: {
          loader: 'swc-loader',
          options: {
            jsc: {
              target: 'es2015',
              parser: { syntax: 'typescript', tsx: true },
              transform: { react: { runtime: 'classic' } },
            },
          },
        },
      },
    ],
  },
  output: {
    filename: '[name].js',
    library: { type: 'amd' },
    path: path.resolve(__dirname, 'dist'),
    publicPath: `public/plugins/${pluginId}/`,
    uniqueName: pluginId,
  },
  resolve: {
    extensions: ['.js', '.jsx', '.ts', '.tsx'],
    modules: [path.resolve(__dirname, 'src'), 'node_modules'],
  },
});
