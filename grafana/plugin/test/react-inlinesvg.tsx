// Grafana's Icon loads its SVG with react-inlinesvg, which fetches /public/img/icons/... and
// updates state when the fetch fails; in Jest there is no Grafana to fetch from, so an empty
// <svg> named after the icon stands in (as @grafana/create-plugin's mock does).
import React from 'react';

const InlineSVG = ({ src }: { src: string }) => (
  <svg xmlns="http://www.w3.org/2000/svg" data-testid={src.replace(/(.+)\/(.+)\.svg$/, '$2')} viewBox="0 0 24 24" />
);

export default InlineSVG;
