// Package prod holds the end-to-end test of the production topology on one machine
// (docs/production.md, scripts/prod.sh, make prod-up): PostgreSQL, two official Temporal
// server processes forming one cluster, two Slipway workers and two API replicas. Releases
// of the demo service go through the API while, one at a time, the worker running the
// release's activity is SIGKILLed, the API replica a client follows (SSE and ?wait) is
// killed, the Temporal server owning the release's history shard is killed, and PostgreSQL
// is restarted (an immediate shutdown, as a crash); every release must succeed and nothing may
// be left behind.
//
// Environment: SLIPWAY_PROD_BIN (a directory holding slipway and slipway-probe already
// built), SLIPWAY_PROD_TEMPORAL_BIN (one holding temporal-server and temporal-sql-tool;
// default: make .bin/temporal-server .bin/temporal-sql-tool), SLIPWAY_PROD_KEEP=1 (keep the
// state directory and its logs).
package prod
