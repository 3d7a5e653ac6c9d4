/**
 * Where the services run and how they reach the databases: a new VPC (private subnets behind
 * NAT, flow logs, an S3 gateway endpoint) or an imported one, and one security group per
 * service that opens only HTTPS (AWS APIs) and the database port.
 */
import { Construct } from 'constructs';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type { DatabaseConfig, TotesConfig } from '../config.ts';
import { encryptedLogGroup } from './log-group.ts';

export class Network extends Construct {
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  /** The capture task's group: reaches the source database. */
  readonly captureSecurityGroup: ec2.SecurityGroup;
  /** The loader's group: reaches the warehouse. */
  readonly loaderSecurityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, config: TotesConfig) {
    super(scope, id);
    if (config.vpc) {
      this.vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
        vpcId: config.vpc.vpcId,
        availabilityZones: config.vpc.availabilityZones,
        privateSubnetIds: config.vpc.privateSubnetIds,
      });
    } else {
      const vpc = new ec2.Vpc(this, 'Vpc', {
        maxAzs: 2,
        natGateways: config.natGateways,
        subnetConfiguration: [
          { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
          { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 24 },
        ],
        // S3 traffic (archive, micro-batches, image layers) stays off the NAT gateway, which bills per GB.
        gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
      });
      vpc.addFlowLog('FlowLog', {
        destination: ec2.FlowLogDestination.toCloudWatchLogs(encryptedLogGroup(this, 'FlowLogGroup', config.logRetentionDays)),
        trafficType: ec2.FlowLogTrafficType.REJECT,
      });
      this.vpc = vpc;
    }
    this.subnets = { subnets: this.vpc.privateSubnets };
    this.captureSecurityGroup = this.serviceGroup(
      'CaptureSecurityGroup',
      'totes-cdc capture task: HTTPS to AWS APIs, Postgres to the source',
      'Source',
      config.source,
    );
    this.loaderSecurityGroup = this.serviceGroup(
      'LoaderSecurityGroup',
      'totes-cdc loader: HTTPS to AWS APIs, Postgres to the warehouse',
      'Warehouse',
      config.warehouse,
    );
  }

  private serviceGroup(id: string, description: string, database: string, db: DatabaseConfig): ec2.SecurityGroup {
    const group = new ec2.SecurityGroup(this, id, { vpc: this.vpc, description, allowAllOutbound: false });
    group.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'AWS APIs (Kinesis, S3, Secrets Manager, CloudWatch)');
    const port = ec2.Port.tcp(db.port);
    if (db.securityGroupId) {
      const dbGroup = ec2.SecurityGroup.fromSecurityGroupId(this, `${database}DatabaseSecurityGroup`, db.securityGroupId);
      group.connections.allowTo(dbGroup, port, `${database} database`);
    } else {
      // The database's group is unknown here: egress to its port anywhere; the database side must admit this group.
      group.addEgressRule(ec2.Peer.anyIpv4(), port, `${database} database`);
    }
    return group;
  }
}
