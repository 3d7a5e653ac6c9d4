/**
 * Test helper: a Kinesis client over a real (local) stream that has aged out every record of a
 * shard up to a point, as Kinesis does past its retention. kinesalite keeps everything, so the
 * trim is made here: TRIM_HORIZON starts after the trimmed records, and an iterator after a
 * trimmed record is refused (`refuse`) or reads empty pages far behind the tip (`empty-pages`),
 * the two ways Kinesis answers it.
 */
import { GetRecordsCommand, GetShardIteratorCommand, type GetShardIteratorCommandInput, type KinesisClient } from '@aws-sdk/client-kinesis';
import { compareSequences } from '../formats/manifest.ts';
import type { StreamClient } from '../stores/shard-stream.ts';

const BEHIND_ITERATOR = 'trimmed-stream:behind';
const RETENTION_MS = 86_400_000;

export class TrimmedStream implements StreamClient {
  /** Per shard, the last record aged out. */
  private readonly trimmedThrough = new Map<string, string>();
  /** Questions asked (GetShardIterator calls), to count what a plan costs. */
  iterators = 0;

  constructor(
    private readonly client: KinesisClient,
    private readonly answer: 'refuse' | 'empty-pages' = 'empty-pages',
  ) {}

  /** Age out every record of `shard` up to and including `through`. */
  trim(shard: string, through: string): void {
    this.trimmedThrough.set(shard, through);
  }

  readonly send = (async (command: { input: unknown }) => {
    if (command instanceof GetShardIteratorCommand) {
      this.iterators++;
      const input = command.input as GetShardIteratorCommandInput;
      const through = this.trimmedThrough.get(input.ShardId!);
      if (through && input.ShardIteratorType === 'TRIM_HORIZON')
        return this.client.send(new GetShardIteratorCommand({ ...input, ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: through }));
      if (through && input.StartingSequenceNumber && compareSequences(input.StartingSequenceNumber, through) < 0) {
        if (this.answer === 'empty-pages') return { ShardIterator: BEHIND_ITERATOR, $metadata: {} };
        throw Object.assign(new Error(`StartingSequenceNumber ${input.StartingSequenceNumber} is older than the trim horizon`), {
          name: 'InvalidArgumentException',
        });
      }
    }
    if (command instanceof GetRecordsCommand && command.input.ShardIterator === BEHIND_ITERATOR)
      return { Records: [], NextShardIterator: BEHIND_ITERATOR, MillisBehindLatest: RETENTION_MS, $metadata: {} };
    return this.client.send(command as GetRecordsCommand);
  }) as StreamClient['send'];
}
