// Builds src/module.ts into dist/module.js, the AMD module Grafana loads: @grafana/create-plugin's
// webpack configuration cut to what this plugin needs. Grafana provides React, its own packages
// and a few libraries at run time (externals), so the bundle holds only our code. plugin.json and
// img/ are copied into dist/ by `make plugin`, which also stamps the version.
const path = require('path');

const pluginId = 'edgeloop-edgeloop-datasource';

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
  'rxjs',
  /^@grafana\/ui/i,
  /^@grafana\/runtime/i,
  /^@grafana\/data/i,
];

module.exports = (env = {}) => ({
  context: path.join(__dirname, 'src'),
  devtool: env.production ? 'source-map' : 'eval-source-map',
  entry: { module: './module.ts' },
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
