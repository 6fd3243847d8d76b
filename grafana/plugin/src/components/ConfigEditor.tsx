import React, { ChangeEvent, FormEvent } from 'react';
import { DataSourcePluginOptionsEditorProps, SelectableValue } from '@grafana/data';
import { FieldSet, InlineField, Input, MultiSelect, SecretInput, SecretTextArea } from '@grafana/ui';

import {
  DEFAULT_ALLOWED_ROLES,
  DEFAULT_THUMBNAIL_CACHE_BYTES,
  DEFAULT_THUMBNAIL_CACHE_ENTRIES,
  DEFAULT_TIMEOUT_SECONDS,
  EdgeloopOptions,
  EdgeloopSecureJsonData,
  EdgeloopSecureKey,
  GRAFANA_ROLES,
} from '../types';

/** Props of the config editor: the data source's settings as Grafana holds them. */
export type Props = DataSourcePluginOptionsEditorProps<EdgeloopOptions, EdgeloopSecureJsonData>;

const LABEL_WIDTH = 26;
const INPUT_WIDTH = 48;

type TextKey = 'collectorUrl' | 'controllerUrl' | 'repositoryUrl';
type NumberKey = 'thumbnailCacheEntries' | 'thumbnailCacheBytes' | 'timeoutSeconds';

/**
 * ConfigEditor edits the data source's jsonData (docs/grafana-plugin.md "Configuring") and its
 * secrets. The backend reads jsonData strictly, so the editor writes only the keys it knows and
 * removes a key rather than storing an empty value. Secrets are write-only: Grafana tells the
 * browser whether each is set (secureJsonFields) and never its value, so a set secret shows
 * "configured" with a Reset button, and a new one is sent once, in secureJsonData.
 */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const jsonData = options.jsonData ?? {};
  const secureJsonFields = options.secureJsonFields ?? {};
  const secureJsonData = options.secureJsonData ?? {};

  const setJson = (key: keyof EdgeloopOptions, value: unknown) => {
    const next: Record<string, unknown> = { ...jsonData };
    if (value === undefined || value === '') {
      delete next[key];
    } else {
      next[key] = value;
    }
    onOptionsChange({ ...options, jsonData: next as EdgeloopOptions });
  };

  const onText = (key: TextKey) => (e: ChangeEvent<HTMLInputElement>) => setJson(key, e.currentTarget.value.trim());

  const onNumber = (key: NumberKey) => (e: ChangeEvent<HTMLInputElement>) => {
    const raw = e.currentTarget.value.trim();
    const n = Number(raw);
    // An empty or unreadable number is the default: the key goes, the backend fills it in.
    setJson(key, raw === '' || !Number.isFinite(n) ? undefined : Math.trunc(n));
  };

  const onRoles = (values: Array<SelectableValue<string>>) =>
    setJson(
      'allowedRoles',
      values.map((v) => v.value!).filter(Boolean)
    );

  const onSecret = (key: EdgeloopSecureKey) => (e: FormEvent<HTMLInputElement | HTMLTextAreaElement>) =>
    onOptionsChange({ ...options, secureJsonData: { ...secureJsonData, [key]: e.currentTarget.value } });

  const onReset = (key: EdgeloopSecureKey) => () =>
    onOptionsChange({
      ...options,
      secureJsonFields: { ...secureJsonFields, [key]: false },
      secureJsonData: { ...secureJsonData, [key]: '' },
    });

  const secret = (key: EdgeloopSecureKey, label: string, tooltip: string) => (
    <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} htmlFor={`edgeloop-${key}`}>
      <SecretInput
        id={`edgeloop-${key}`}
        aria-label={label}
        width={INPUT_WIDTH}
        placeholder="paste it here; it is never shown again"
        isConfigured={!!secureJsonFields[key]}
        value={secureJsonData[key] ?? ''}
        onChange={onSecret(key)}
        onReset={onReset(key)}
      />
    </InlineField>
  );

  const text = (key: TextKey, label: string, placeholder: string, tooltip: string) => (
    <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} htmlFor={`edgeloop-${key}`}>
      <Input
        id={`edgeloop-${key}`}
        aria-label={label}
        width={INPUT_WIDTH}
        placeholder={placeholder}
        value={jsonData[key] ?? ''}
        onChange={onText(key)}
      />
    </InlineField>
  );

  const number = (key: NumberKey, label: string, def: number, tooltip: string) => (
    <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} htmlFor={`edgeloop-${key}`}>
      <Input
        id={`edgeloop-${key}`}
        aria-label={label}
        type="number"
        min={0}
        width={20}
        placeholder={String(def)}
        value={jsonData[key] ?? ''}
        onChange={onNumber(key)}
      />
    </InlineField>
  );

  const roles = jsonData.allowedRoles ?? DEFAULT_ALLOWED_ROLES;

  return (
    <>
      <FieldSet label="Collector">
        {text('collectorUrl', 'Collector URL', 'https://collector:9751', 'The collector’s base URL: samples, catalog, thumbnails and labelling.')}
        {secret('collectorToken', 'Collector token', 'An operator token of the collector (auth.operator_tokens_file).')}
      </FieldSet>
      <FieldSet label="Retrain controller">
        {text('controllerUrl', 'Controller URL', 'https://retrain:9752', 'The retrain controller’s base URL: jobs, decisions, retrain and cancel.')}
        {secret('controllerToken', 'Controller token', 'An operator token of the controller (its auth.operator_tokens_file).')}
      </FieldSet>
      <FieldSet label="Model repository">
        {text(
          'repositoryUrl',
          'Repository URL',
          's3://edgeloop?endpoint=minio:9000',
          'The model repository as a bucket URL (s3://, file://, or the collector’s https://…/v1/repo); empty turns versions off.'
        )}
        {secret('repositoryAccessKey', 'Access key', 'Read key of an s3:// repository; unset with the secret key: anonymous.')}
        {secret('repositorySecretKey', 'Secret key', 'Secret of the access key.')}
        {secret('repositoryToken', 'Repository token', 'A node token of the collector, for an https://…/v1/repo repository.')}
      </FieldSet>
      <FieldSet label="Access and limits">
        <InlineField
          label="Roles that may act"
          labelWidth={LABEL_WIDTH}
          tooltip="Grafana roles whose users may label, retrain and cancel; an empty list lets nobody."
          htmlFor="edgeloop-allowedRoles"
        >
          <MultiSelect
            inputId="edgeloop-allowedRoles"
            aria-label="Roles that may act"
            width={INPUT_WIDTH}
            options={GRAFANA_ROLES.map((r) => ({ label: r, value: r }))}
            value={roles}
            onChange={onRoles}
          />
        </InlineField>
        {number('thumbnailCacheEntries', 'Thumbnail cache entries', DEFAULT_THUMBNAIL_CACHE_ENTRIES, 'Thumbnails kept in memory (empty or 0: the default).')}
        {number('thumbnailCacheBytes', 'Thumbnail cache bytes', DEFAULT_THUMBNAIL_CACHE_BYTES, 'Bytes of thumbnails kept, whichever bound is reached first (empty or 0: 64 MiB).')}
        {number('timeoutSeconds', 'Timeout (seconds)', DEFAULT_TIMEOUT_SECONDS, 'Bound on each request to the collector, controller and repository (1–600).')}
        <InlineField
          label="CA certificate"
          labelWidth={LABEL_WIDTH}
          tooltip="PEM bundle trusted for https:// URLs instead of the system's, for a private CA."
          htmlFor="edgeloop-tlsCACert"
        >
          <SecretTextArea
            id="edgeloop-tlsCACert"
            aria-label="CA certificate"
            cols={INPUT_WIDTH}
            rows={4}
            placeholder="-----BEGIN CERTIFICATE-----"
            isConfigured={!!secureJsonFields.tlsCACert}
            value={secureJsonData.tlsCACert ?? ''}
            onChange={onSecret('tlsCACert')}
            onReset={onReset('tlsCACert')}
          />
        </InlineField>
      </FieldSet>
    </>
  );
}
