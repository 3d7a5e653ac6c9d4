/**
 * The 11 captured totesys tables, their primary keys and columns in ordinal order.
 * `_prisma_migrations` is deliberately absent: it is never captured.
 */
export const SOURCE_TABLES = {
  address: ['address_id', 'address_line_1', 'address_line_2', 'district', 'city', 'postal_code', 'country', 'phone', 'created_at', 'last_updated'],
  counterparty: ['counterparty_id', 'counterparty_legal_name', 'legal_address_id', 'commercial_contact', 'delivery_contact', 'created_at', 'last_updated'],
  currency: ['currency_id', 'currency_code', 'created_at', 'last_updated'],
  department: ['department_id', 'department_name', 'location', 'manager', 'created_at', 'last_updated'],
  design: ['design_id', 'created_at', 'design_name', 'file_location', 'file_name', 'last_updated'],
  staff: ['staff_id', 'first_name', 'last_name', 'department_id', 'email_address', 'created_at', 'last_updated'],
  sales_order: [
    'sales_order_id',
    'created_at',
    'last_updated',
    'design_id',
    'staff_id',
    'counterparty_id',
    'units_sold',
    'unit_price',
    'currency_id',
    'agreed_delivery_date',
    'agreed_payment_date',
    'agreed_delivery_location_id',
  ],
  purchase_order: [
    'purchase_order_id',
    'created_at',
    'last_updated',
    'staff_id',
    'counterparty_id',
    'item_code',
    'item_quantity',
    'item_unit_price',
    'currency_id',
    'agreed_delivery_date',
    'agreed_payment_date',
    'agreed_delivery_location_id',
  ],
  payment_type: ['payment_type_id', 'payment_type_name', 'created_at', 'last_updated'],
  transaction: ['transaction_id', 'transaction_type', 'sales_order_id', 'purchase_order_id', 'created_at', 'last_updated'],
  payment: [
    'payment_id',
    'created_at',
    'last_updated',
    'transaction_id',
    'counterparty_id',
    'payment_amount',
    'currency_id',
    'payment_type_id',
    'paid',
    'payment_date',
    'company_ac_number',
    'counterparty_ac_number',
  ],
} as const;

export type SourceTable = keyof typeof SOURCE_TABLES;
export const SOURCE_TABLE_NAMES = Object.keys(SOURCE_TABLES) as SourceTable[];

/** The columns the source lets be NULL (data-model.md §1, marked *); every other column of SOURCE_TABLES is NOT NULL. */
const NULLABLE: Partial<Record<SourceTable, readonly string[]>> = {
  address: ['address_line_2', 'district'],
  counterparty: ['commercial_contact', 'delivery_contact'],
  department: ['location', 'manager'],
  transaction: ['sales_order_id', 'purchase_order_id'],
};

const NOT_NULL = new Map(SOURCE_TABLE_NAMES.map((t) => [t, new Set<string>(SOURCE_TABLES[t].filter((c) => !NULLABLE[t]?.includes(c)))]));

/** Whether the source declares `column` of `table` NOT NULL (a column it does not declare is not). */
export function isNotNull(table: SourceTable, column: string): boolean {
  return NOT_NULL.get(table)?.has(column) ?? false;
}

/** Every totesys table's primary key is its first column, `<table>_id`. */
export function primaryKeyOf(table: SourceTable): string {
  return SOURCE_TABLES[table][0];
}

export function isSourceTable(name: string): name is SourceTable {
  return Object.hasOwn(SOURCE_TABLES, name);
}
