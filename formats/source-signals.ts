/**
 * Signals written into the source's WAL by us, not by the business: heartbeats (the freshness
 * watermark) and capture's own markers. They cross stages: capture decodes them, `totes verify`
 * writes a heartbeat to learn when the warehouse has caught up with a point in the source.
 */

/** Every logical message of ours starts with this; messages with other prefixes are not ours. */
export const MESSAGE_PREFIX = 'totes-cdc/';
/** A heartbeat: once it is through the pipeline, everything committed before it is too. */
export const HEARTBEAT_PREFIX = `${MESSAGE_PREFIX}heartbeat`;
