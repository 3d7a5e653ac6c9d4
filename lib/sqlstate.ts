/**
 * The Postgres error codes (SQLSTATE) this code tells apart, by the condition names of the
 * manual's Appendix A. Server errors are told apart by these, never by their text, which
 * changes between majors.
 */
export const SQLSTATE = {
  restrict_violation: '23001',
  not_null_violation: '23502',
  foreign_key_violation: '23503',
  unique_violation: '23505',
  invalid_authorization_specification: '28000',
  invalid_password: '28P01',
  invalid_catalog_name: '3D000',
  insufficient_privilege: '42501',
  undefined_object: '42704',
  duplicate_object: '42710',
  duplicate_schema: '42P06',
  duplicate_table: '42P07',
  insufficient_resources: '53000',
  out_of_memory: '53200',
  too_many_connections: '53300',
  configuration_limit_exceeded: '53400',
  object_not_in_prerequisite_state: '55000',
  object_in_use: '55006',
  admin_shutdown: '57P01',
  crash_shutdown: '57P02',
  cannot_connect_now: '57P03',
  undefined_file: '58P01',
} as const;

/** Class 08, connection_exception: every code starting with it. */
export const CONNECTION_EXCEPTION_CLASS = '08';
