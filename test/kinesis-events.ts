/** Test helpers: change events as capture emits them, and the Lambda Kinesis events that carry them. */
import type { KinesisStreamEvent } from 'aws-lambda';
import { encodeEvent, type ChangeEvent, type EventSource, type Op, type Row, type StreamEvent } from '../formats/change-event.ts';
import { primaryKeyOf, type SourceTable } from '../formats/source-tables.ts';
import { toLambdaRecord } from '../local/kinesis-poller.ts';

export function kinesisEvent(records: (StreamEvent | string)[], shard = 'shardId-000000000000', firstSequence = 1): KinesisStreamEvent {
  return {
    Records: records.map((r, i) =>
      toLambdaRecord(
        {
          SequenceNumber: String(firstSequence + i).padStart(20, '0'),
          PartitionKey: 'p',
          ApproximateArrivalTimestamp: new Date(),
          Data: Buffer.from(typeof r === 'string' ? r : encodeEvent(r)),
        },
        shard,
        'changes',
      ),
    ),
  };
}

let nextLsn = 0x1000;

/** A sales_order change, at the next commit LSN unless `source` says where. */
export function salesOrderChange(id: number, op: 'c' | 'u' | 'd' = 'c', overrides: Record<string, unknown> = {}, source?: EventSource): ChangeEvent {
  const lsn = `0/${(nextLsn += 0x10).toString(16).toUpperCase()}`;
  const after = {
    sales_order_id: id,
    created_at: '2024-05-01 09:15:02.123',
    last_updated: '2024-05-01 09:15:02',
    design_id: 1,
    staff_id: 1,
    counterparty_id: 1,
    units_sold: 1000,
    unit_price: '3.99',
    currency_id: 1,
    agreed_delivery_date: '2024-05-03',
    agreed_payment_date: '2024-05-04',
    agreed_delivery_location_id: 1,
    ...overrides,
  };
  return changeEvent('sales_order', op, after as Row, source ?? { lsn, pos: 0, xid: 1, commitTime: '2024-05-01T09:15:02.123456Z' });
}

/** The change of `row` in `table`, keyed by its primary key; a delete carries the old key as `before` and no `after`. */
export function changeEvent(table: SourceTable, op: Op, row: Row, source: EventSource): ChangeEvent {
  const pk = primaryKeyOf(table);
  const key = { [pk]: row[pk] };
  return { v: 1, kind: 'change', op, table, key, before: op === 'd' ? key : null, after: op === 'd' ? null : row, source };
}
