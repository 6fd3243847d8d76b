import React, { useEffect, useState } from 'react';
import { DataSourcePicker, getDataSourceSrv } from '@grafana/runtime';
import { Alert, InlineField } from '@grafana/ui';

import { DataSource } from '../datasource';
import { DATASOURCE_TYPE, errorText, firstDataSource } from './common';

/** EdgeloopDataSource is the data source a page works with, as useDataSource chose and loaded it. */
export interface EdgeloopDataSource {
  uid?: string;
  setUid: (uid: string) => void;
  ds?: DataSource;
  error?: string;
}

/**
 * useDataSource picks the page's edgeloop data source (the default one of the type, else the
 * first) and loads its instance through Grafana's DataSourceSrv, so that queries and actions go
 * through the same DataSource class a panel uses.
 */
export function useDataSource(): EdgeloopDataSource {
  const [uid, setUid] = useState<string | undefined>(() => firstDataSource());
  const [ds, setDs] = useState<DataSource | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    if (!uid) {
      return;
    }
    let live = true;
    getDataSourceSrv()
      .get(uid)
      .then((d) => {
        if (live) {
          setDs(d as unknown as DataSource);
          setError(undefined);
        }
      })
      .catch((err) => live && setError(errorText(err)));
    return () => {
      live = false;
    };
  }, [uid]);
  return { uid, setUid, ds: ds?.uid === uid ? ds : undefined, error };
}

/** DataSourceBar is the data source picker, limited to edgeloop's type, and what went wrong loading it. */
export function DataSourceBar({ source }: { source: EdgeloopDataSource }) {
  if (!source.uid) {
    return (
      <Alert severity="info" title="No edgeloop data source">
        Add one under Connections → Data sources → edgeloop (docs/grafana-plugin.md, “Configuring”).
      </Alert>
    );
  }
  return (
    <>
      <InlineField label="Data source" labelWidth={14}>
        <DataSourcePicker
          type={DATASOURCE_TYPE}
          current={source.uid}
          noDefault
          width={30}
          onChange={(s) => source.setUid(s.uid)}
        />
      </InlineField>
      {source.error && <Alert severity="error" title={`Data source: ${source.error}`} />}
    </>
  );
}

/** useModels lists the model names the data source knows (its models resource), for the model fields. */
export function useModels(ds?: DataSource): string[] {
  const [models, setModels] = useState<string[]>([]);
  useEffect(() => {
    let live = true;
    ds?.getModels()
      .then((a) => live && setModels(a.models ?? []))
      .catch(() => live && setModels([]));
    return () => {
      live = false;
    };
  }, [ds]);
  return models;
}
