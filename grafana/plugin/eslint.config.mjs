// ESLint with Grafana's shared rules (@grafana/eslint-config), as @grafana/create-plugin sets it up.
import { defineConfig } from 'eslint/config';
import grafanaConfig from '@grafana/eslint-config/flat.js';

export default defineConfig([
  { ignores: ['**/node_modules/', '**/dist/', '**/coverage/', 'pkg/'] },
  ...grafanaConfig,
  { rules: { 'react/prop-types': 'off' } },
  {
    files: ['src/**/*.{ts,tsx}'],
    languageOptions: { parserOptions: { project: './tsconfig.json' } },
    rules: { '@typescript-eslint/no-deprecated': 'warn' },
  },
  {
    files: ['*.js', '*.mjs'],
    languageOptions: { globals: { module: 'readonly', require: 'readonly', process: 'readonly', __dirname: 'readonly', jest: 'readonly', global: 'readonly' } },
  },
]);
