import React, { ChangeEvent, useState } from 'react';
import { InlineField, Input, RadioButtonGroup } from '@grafana/ui';

import { RANGES } from './common';

/** TextFilter is a text field committed when it loses focus or on Enter, offering known values. */
export function TextFilter(props: {
  label: string;
  value: string;
  onCommit: (v: string) => void;
  options?: string[];
  placeholder?: string;
  width?: number;
}) {
  const { label, value, onCommit, options, placeholder, width = 20 } = props;
  // The field holds what is typed; value changes only through onCommit, so it is read once.
  const [text, setText] = useState(value);
  const id = `edgeloop-${label.toLowerCase().replace(/\W+/g, '-')}`;
  return (
    <InlineField label={label} labelWidth={12}>
      <>
        <Input
          aria-label={label}
          width={width}
          value={text}
          placeholder={placeholder}
          list={options ? `${id}-list` : undefined}
          onChange={(e: ChangeEvent<HTMLInputElement>) => setText(e.currentTarget.value)}
          onBlur={() => text !== value && onCommit(text.trim())}
          onKeyDown={(e) => e.key === 'Enter' && text !== value && onCommit(text.trim())}
        />
        {options && (
          <datalist id={`${id}-list`}>
            {options.map((o) => (
              <option key={o} value={o} />
            ))}
          </datalist>
        )}
      </>
    </InlineField>
  );
}

/** NumberFilter is a number field committed when it loses focus; empty is undefined. */
export function NumberFilter(props: {
  label: string;
  value?: number;
  onCommit: (v: number | undefined) => void;
  min?: number;
  max?: number;
  step?: number;
}) {
  const { label, value, onCommit, min, max, step } = props;
  const [text, setText] = useState(value === undefined ? '' : String(value));
  const commit = () => {
    const n = text.trim() === '' ? undefined : Number(text);
    if (n === undefined || Number.isFinite(n)) {
      if (n !== value) {
        onCommit(n);
      }
    }
  };
  return (
    <InlineField label={label} labelWidth={12}>
      <Input
        aria-label={label}
        type="number"
        width={10}
        min={min}
        max={max}
        step={step}
        value={text}
        onChange={(e: ChangeEvent<HTMLInputElement>) => setText(e.currentTarget.value)}
        onBlur={commit}
        onKeyDown={(e) => e.key === 'Enter' && commit()}
      />
    </InlineField>
  );
}

/** RangeFilter picks one of the pages' time ranges (RANGES). */
export function RangeFilter({ value, onChange }: { value: string; onChange: (v: string) => void }) {
  return (
    <InlineField label="Time range" labelWidth={12}>
      <RadioButtonGroup options={RANGES} value={value} onChange={onChange} />
    </InlineField>
  );
}
