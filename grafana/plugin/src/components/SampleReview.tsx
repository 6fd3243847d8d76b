import React, { KeyboardEvent, useMemo, useState } from 'react';
import { css } from '@emotion/css';
import { DataFrame, GrafanaTheme2 } from '@grafana/data';
import { config } from '@grafana/runtime';
import { Alert, Button, useStyles2 } from '@grafana/ui';

import { DataSource } from '../datasource';
import { LabelAction } from '../types';

/** LABELS_PER_REQUEST bounds one POST labels: far below the backend's 4 MiB body limit. */
export const LABELS_PER_REQUEST = 500;

/** MAX_TILES bounds the grid: a review is of the newest samples, not of a whole range. */
const MAX_TILES = 200;

/** Props of the sample review. */
export interface Props {
  /** The samples query's frames (QueryEditor's data.series). */
  frames: DataFrame[];
  model: string;
  datasource: DataSource;
  /** batchSize is the most labels per request (default LABELS_PER_REQUEST). */
  batchSize?: number;
  /** readOnly shows the samples without labelling: for users whose role may not act. */
  readOnly?: boolean;
}

interface Tile {
  key: string;
  thumbnail: string;
  predicted: string;
  confidence?: number;
  label: string;
}

/**
 * SampleReview shows a samples query's result as a grid of thumbnails to label from the
 * keyboard: arrows move, a digit gives the selected sample that class index and moves on,
 * Backspace takes a pending label back, Enter (or the button) sends the pending labels, in
 * batches of batchSize, through the labels resource. It is shown under a samples query in the
 * query editor and on the app's sample review page (pages/ReviewPage.tsx); readOnly leaves the
 * grid and its moves without the labelling keys and the send button.
 */
export function SampleReview({ frames, model, datasource, batchSize = LABELS_PER_REQUEST, readOnly = false }: Props) {
  const styles = useStyles2(getStyles);
  const tiles = useMemo(() => readTiles(frames), [frames]);
  const [selected, setSelected] = useState(0);
  const [pending, setPending] = useState<Map<string, number>>(new Map());
  const [sending, setSending] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string } | undefined>();

  if (tiles.length === 0) {
    return null;
  }
  const current = Math.min(selected, tiles.length - 1);

  const setLabel = (key: string, label: number | undefined) => {
    const next = new Map(pending);
    if (label === undefined) {
      next.delete(key);
    } else {
      next.set(key, label);
    }
    setPending(next);
  };

  const send = async () => {
    if (pending.size === 0 || sending) {
      return;
    }
    setSending(true);
    const labels: LabelAction[] = [...pending].map(([key, label]) => ({ key, label }));
    let stored = 0;
    try {
      for (let i = 0; i < labels.length; i += batchSize) {
        const batch = labels.slice(i, i + batchSize);
        const ans = await datasource.postLabels(model, batch);
        stored += ans?.stored ?? batch.length;
        // What was stored is no longer pending, even when a later batch fails.
        setPending((p) => {
          const next = new Map(p);
          batch.forEach((l) => next.delete(l.key!));
          return next;
        });
      }
      setResult({ ok: true, text: `${stored} labels stored` });
    } catch (err) {
      setResult({ ok: false, text: `${stored} labels stored, then: ${errorText(err)}` });
    } finally {
      setSending(false);
    }
  };

  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    const move = (to: number) => setSelected(Math.max(0, Math.min(tiles.length - 1, to)));
    if (readOnly && e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') {
      return;
    }
    if (/^[0-9]$/.test(e.key)) {
      setLabel(tiles[current].key, Number(e.key));
      move(current + 1);
    } else if (e.key === 'ArrowRight') {
      move(current + 1);
    } else if (e.key === 'ArrowLeft') {
      move(current - 1);
    } else if (e.key === 'Backspace' || e.key === 'Delete') {
      setLabel(tiles[current].key, undefined);
    } else if (e.key === 'Enter') {
      send();
    } else {
      return;
    }
    e.preventDefault();
  };

  return (
    <div className={styles.review}>
      <div className={styles.bar}>
        {readOnly ? (
          <span>Review: arrows move. Your role may not label.</span>
        ) : (
          <>
            <span>
              Review: arrows move, 0–9 labels the selected sample with that class index, Backspace takes it back, Enter
              sends.
            </span>
            <Button size="sm" disabled={pending.size === 0 || sending} onClick={send}>
              {`Send ${pending.size} labels`}
            </Button>
          </>
        )}
      </div>
      {result && <Alert severity={result.ok ? 'success' : 'error'} title={result.text} onRemove={() => setResult(undefined)} />}
      <div className={styles.grid} role="grid" aria-label="Samples to review" tabIndex={0} onKeyDown={onKeyDown}>
        {tiles.map((t, i) => (
          <div
            key={t.key}
            role="gridcell"
            aria-selected={i === current}
            data-key={t.key}
            className={i === current ? `${styles.tile} ${styles.selected}` : styles.tile}
            onClick={() => setSelected(i)}
          >
            <img src={t.thumbnail} alt={`sample ${t.key}`} className={styles.img} loading="lazy" />
            <div>
              {t.predicted}
              {t.confidence !== undefined ? ` ${t.confidence.toFixed(2)}` : ''}
            </div>
            <div className={styles.label}>{pending.has(t.key) ? `→ ${pending.get(t.key)}` : t.label}</div>
          </div>
        ))}
      </div>
    </div>
  );
}

/** readTiles takes the rows of the first frame with the samples' key and thumbnail_url fields. */
export function readTiles(frames: DataFrame[]): Tile[] {
  for (const f of frames) {
    const field = (name: string) => f.fields.find((x) => x.name === name);
    const key = field('key');
    const thumb = field('thumbnail_url');
    if (!key || !thumb) {
      continue;
    }
    const predicted = field('predicted_class');
    const confidence = field('confidence');
    const label = field('label');
    const tiles: Tile[] = [];
    for (let i = 0; i < Math.min(f.length, MAX_TILES); i++) {
      tiles.push({
        key: String(key.values[i]),
        thumbnail: underGrafana(String(thumb.values[i])),
        predicted: predicted ? String(predicted.values[i] ?? '') : '',
        confidence: typeof confidence?.values[i] === 'number' ? confidence.values[i] : undefined,
        label: label ? String(label.values[i] ?? '') : '',
      });
    }
    return tiles;
  }
  return [];
}

/** underGrafana prefixes Grafana's sub-path (root_url /grafana/) to the backend's /api/... URL. */
function underGrafana(url: string): string {
  return url.startsWith('/') ? (config.appSubUrl ?? '') + url : url;
}

function errorText(err: unknown): string {
  const e = err as { data?: { error?: string; message?: string }; status?: number; message?: string };
  return e?.data?.error ?? e?.data?.message ?? e?.message ?? String(err);
}

const getStyles = (theme: GrafanaTheme2) => ({
  review: css({ marginTop: theme.spacing(1) }),
  bar: css({ display: 'flex', gap: theme.spacing(2), alignItems: 'center', marginBottom: theme.spacing(1) }),
  grid: css({
    display: 'grid',
    gridTemplateColumns: 'repeat(auto-fill, minmax(96px, 1fr))',
    gap: theme.spacing(1),
    maxHeight: 480,
    overflowY: 'auto',
  }),
  tile: css({
    border: `1px solid ${theme.colors.border.weak}`,
    padding: theme.spacing(0.5),
    fontSize: theme.typography.bodySmall.fontSize,
    cursor: 'pointer',
  }),
  selected: css({ outline: `2px solid ${theme.colors.primary.main}` }),
  img: css({ width: '100%', imageRendering: 'pixelated' }),
  label: css({ color: theme.colors.text.secondary }),
});
