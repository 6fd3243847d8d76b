// Package packages holds no code: its directory keeps the Debian and RPM packages' nfpm
// definitions, systemd units, maintainer scripts and configuration files, and its integration
// test builds the packages, verifies the units and installs, upgrades and removes the packages
// in a throwaway root (docs/deploy.md, "Single-node site: Debian and RPM packages").
package packages
