// What jsdom lacks and Grafana's components use (as @grafana/create-plugin's jest-setup).
import '@testing-library/jest-dom';
import { configure } from '@testing-library/react';
import { TextEncoder, TextDecoder } from 'util';

Object.assign(global, { TextDecoder, TextEncoder });

Object.defineProperty(global, 'matchMedia', {
  writable: true,
  value: (query) => ({
    matches: false,
    media: query,
    onchange: null,
    addListener: jest.fn(),
    removeListener: jest.fn(),
    addEventListener: jest.fn(),
    removeEventListener: jest.fn(),
    dispatchEvent: jest.fn(),
  }),
});

HTMLCanvasElement.prototype.getContext = () => {};

// findBy* and waitFor wait up to 10 s instead of 1 s: on a loaded machine (two cores shared by
// several test runs) a page's first query and render can take longer than a second, which made
// correct tests fail by chance.
configure({ asyncUtilTimeout: 10000 });
