import type { DeployModel, DeployService, GeneratedFile } from './index.js';
import { FIRESTORE_INDEXES } from '../store/firestore-indexes.js';

/**
 * Terraform (JSON syntax, `*.tf.json`) for Google Cloud, generated from the manifest:
 * - one Cloud Run v2 service per manifest service (scaling from the manifest, VPC connector, env, secret
 *   env from Secret Manager; ingress internal-only unless `expose: true`), each with its own service account;
 * - Pub/Sub topics for every manifest topic without `{instanceId}`, one pull subscription per (service,
 *   consumed topic) with retry and dead-letter policies, and the dead-letter topic the bus driver uses;
 * - least-privilege IAM: publisher only on published topics, subscriber only on own subscriptions,
 *   datastore.user only for services that use the store, secretAccessor only on the secrets a service lists;
 * - Firestore, Artifact Registry, Secret Manager secrets (values are added out of band);
 * - a VPC, subnet, proxy-only subnet and Serverless VPC Access connector; a regional internal application
 *   load balancer (one host per service under `var.internal_domain`, private DNS); a global external HTTPS
 *   load balancer with serverless NEGs for the `expose: true` services and only their manifest paths.
 *
 * Resource names must match the Pub/Sub driver: topic `${bus_prefix}${topic}` and subscription
 * `${bus_prefix}${topic}--${service}` (see src/bus/pubsub.ts).
 */

type Body = Record<string, unknown>;
type Blocks = Record<string, Record<string, Body>>;

const SUBSCRIPTION_ACK_DEADLINE_SEC = 30;
const RETENTION = '604800s';
const DEADLETTER_TOPIC = 'internal.pubsub-deadletter';
const DEADLETTER_RETAINED = 'retained';
const APIS = ['artifactregistry', 'compute', 'dns', 'firestore', 'iam', 'pubsub', 'run', 'secretmanager', 'vpcaccess'] as const;

/** Environment variables Cloud Run does not get, and why (documented in the output too). */
export const CLOUD_RUN_OMITTED_ENV: Record<string, string> = {
  PORT: 'reserved: Cloud Run sets it',
  NATS_URL: 'the bus is Pub/Sub',
  DATABASE_URL: 'the store is Firestore',
  PUBSUB_EMULATOR_HOST: 'emulators are for local tests',
  FIRESTORE_EMULATOR_HOST: 'emulators are for local tests',
  SECRETS_DIR: 'secrets come from Secret Manager as env',
  INSTANCE_ID: 'each instance picks a random id (per-instance egress topics are created at run time)',
};

/** A Terraform identifier for a name (`internal.ingress.v1` → `internal_ingress_v1`). */
export function tfName(name: string): string {
  const id = name.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[A-Za-z_]/.test(id) ? id : `_${id}`;
}

/** The Terraform resource name of a (topic, service) subscription. */
export function subscriptionResourceName(topic: string, service: string): string {
  return `${tfName(topic)}__${tfName(service)}`;
}

const ref = (expression: string) => `\${${expression}}`;
const quote = (value: string) => JSON.stringify(value);
const member = (service: string) => `serviceAccount:${ref(`google_service_account.${tfName(service)}.email`)}`;
const apiDependency = (api: (typeof APIS)[number]) => `google_project_service.${api}`;

/** Service account ids: 6–30 characters, lower-case letters, digits and hyphens. */
function accountId(service: string): string {
  const id = `bb-${service.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`.slice(0, 30).replace(/-+$/, '');
  return id.length >= 6 ? id : `${id}-svc`.slice(0, 30);
}

function add(blocks: Blocks, type: string, name: string, body: Body): void {
  (blocks[type] ??= {})[name] = body;
}

function file(path: string, comment: string, content: Body): GeneratedFile {
  return { path, content: `${JSON.stringify({ '//': comment, ...content }, null, 2)}\n` };
}

/** Services whose replies may go to a per-instance egress topic (they publish to the egress topics). */
function publishesReplies(service: DeployService): boolean {
  return service.manifest.publishes.some((topic) => topic.startsWith('internal.egress.'));
}

function isConsumer(service: DeployService): boolean {
  return service.consumes.length + service.perInstanceConsumes.length > 0;
}

export function renderTerraform(model: DeployModel): { files: GeneratedFile[]; warnings: string[] } {
  const warnings: string[] = [];
  const exposed = model.services.filter((service) => service.manifest.expose);
  const files: GeneratedFile[] = [];

  // main: provider, variables, shared data and locals.
  const variables: Record<string, Body> = {
    project: { type: 'string', description: 'Google Cloud project id.', ...(model.projectId ? { default: model.projectId } : {}) },
    region: {
      type: 'string',
      description: 'Region of Cloud Run, the VPC connector, Artifact Registry and the internal load balancer.',
      default: model.region,
    },
    image_tag: { type: 'string', description: 'Tag of the bitbrat image in Artifact Registry.', default: 'latest' },
    image: {
      type: 'string',
      description: 'Full image reference; empty uses <region>-docker.pkg.dev/<project>/bitbrat/bitbrat:<image_tag>.',
      default: model.image ?? '',
    },
    bus_prefix: {
      type: 'string',
      description: 'BUS_PREFIX: prepended to every Pub/Sub topic and subscription name.',
      default: '',
      validation: [
        {
          condition: ref('can(regex("^([A-Za-z][A-Za-z0-9._~+-]*)?$", var.bus_prefix))'),
          error_message: 'bus_prefix must start with a letter and use only letters, digits and . _ ~ + -',
        },
      ],
    },
    log_level: { type: 'string', description: 'LOG_LEVEL of every service.', default: 'info' },
    service_env: {
      type: 'map(map(string))',
      description: 'Per-service settings from the manifest, e.g. { "ingress-egress" = { TWITCH_CHANNELS = "mychannel" } }.',
      default: {},
    },
    otel: {
      type: 'map(string)',
      description:
        'OpenTelemetry settings of every service, e.g. { OTEL_EXPORTER_OTLP_ENDPOINT = "http://localhost:4318" }; service_env overrides them per service.',
      default: {},
    },
    domains: { type: 'list(string)', description: 'Domains of the external HTTPS load balancer (Google-managed certificate).' },
    internal_domain: {
      type: 'string',
      description: 'Private DNS domain of the internal load balancer: <service>.<internal_domain>.',
      default: 'bitbrat.internal',
    },
    firestore_location: { type: 'string', description: 'Firestore location (multi-region nam5 or eur3, or a region).', default: 'nam5' },
    max_delivery_attempts: {
      type: 'number',
      description: 'Deliveries before Pub/Sub moves a message to the dead-letter topic (5–100).',
      default: 20,
    },
  };
  const apis: Blocks = {};
  for (const api of APIS) add(apis, 'google_project_service', api, { service: `${api}.googleapis.com`, disable_on_destroy: false });
  files.push(
    file('main.tf.json', 'Generated from architecture.yaml by `bitbrat infra generate`; do not edit.', {
      terraform: {
        required_version: '>= 1.5.0',
        required_providers: { google: { source: 'hashicorp/google', version: '>= 6.10.0, < 8.0.0' } },
      },
      provider: { google: { project: ref('var.project'), region: ref('var.region') } },
      variable: variables,
      data: { google_project: { this: { project_id: ref('var.project') } } },
      locals: {
        image: ref(
          'var.image != "" ? var.image : format("%s-docker.pkg.dev/%s/%s/bitbrat:%s", var.region, var.project, google_artifact_registry_repository.bitbrat.repository_id, var.image_tag)',
        ),
        pubsub_service_agent: `serviceAccount:service-${ref('data.google_project.this.number')}@gcp-sa-pubsub.iam.gserviceaccount.com`,
      },
      resource: apis,
    }),
  );

  // network: VPC, subnets, connector, private DNS for the internal load balancer.
  const network: Blocks = {};
  add(network, 'google_compute_network', 'vpc', {
    name: 'bitbrat-vpc',
    auto_create_subnetworks: false,
    depends_on: [apiDependency('compute')],
  });
  add(network, 'google_compute_subnetwork', 'services', {
    name: 'bitbrat-services',
    region: ref('var.region'),
    network: ref('google_compute_network.vpc.id'),
    ip_cidr_range: '10.10.0.0/24',
    private_ip_google_access: true,
  });
  add(network, 'google_compute_subnetwork', 'proxy_only', {
    name: 'bitbrat-proxy-only',
    region: ref('var.region'),
    network: ref('google_compute_network.vpc.id'),
    ip_cidr_range: '10.10.1.0/24',
    purpose: 'REGIONAL_MANAGED_PROXY',
    role: 'ACTIVE',
  });
  add(network, 'google_vpc_access_connector', 'connector', {
    name: 'bitbrat-connector',
    region: ref('var.region'),
    network: ref('google_compute_network.vpc.name'),
    ip_cidr_range: '10.8.0.0/28',
    machine_type: 'e2-micro',
    min_instances: 2,
    max_instances: 3,
    depends_on: [apiDependency('vpcaccess')],
  });
  add(network, 'google_dns_managed_zone', 'internal', {
    name: 'bitbrat-internal',
    dns_name: `${ref('var.internal_domain')}.`,
    visibility: 'private',
    private_visibility_config: [{ networks: [{ network_url: ref('google_compute_network.vpc.id') }] }],
    depends_on: [apiDependency('dns')],
  });
  add(network, 'google_dns_record_set', 'internal_services', {
    name: `*.${ref('var.internal_domain')}.`,
    managed_zone: ref('google_dns_managed_zone.internal.name'),
    type: 'A',
    ttl: 300,
    rrdatas: [ref('google_compute_address.internal_lb.address')],
  });
  files.push(file('network.tf.json', 'VPC, subnets, Serverless VPC Access connector and the private DNS zone.', { resource: network }));

  // Artifact Registry and Firestore.
  files.push(
    file('registry.tf.json', 'Artifact Registry repository for the one bitbrat image.', {
      resource: {
        google_artifact_registry_repository: {
          bitbrat: {
            location: ref('var.region'),
            repository_id: 'bitbrat',
            format: 'DOCKER',
            description: 'BitBrat service image',
            depends_on: [apiDependency('artifactregistry')],
          },
        },
      },
    }),
  );
  files.push(
    file('firestore.tf.json', 'The Firestore database of the store (STORE_DRIVER=firestore).', {
      resource: {
        google_firestore_database: {
          main: {
            name: '(default)',
            location_id: ref('var.firestore_location'),
            type: 'FIRESTORE_NATIVE',
            deletion_policy: 'ABANDON',
            depends_on: [apiDependency('firestore')],
          },
        },
        google_firestore_index: Object.fromEntries(
          FIRESTORE_INDEXES.map((index) => [
            `${index.collection}_${index.fields
              .filter((field) => field.field !== '__name__')
              .map((field) => field.field.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`))
              .join('_')}`,
            {
              database: ref('google_firestore_database.main.name'),
              collection: index.collection,
              query_scope: 'COLLECTION',
              fields: index.fields.map((field) => ({ field_path: field.field, order: field.order })),
            },
          ]),
        ),
      },
    }),
  );

  // Pub/Sub: topics, subscriptions, dead letters.
  const pubsub: Blocks = {};
  add(pubsub, 'google_pubsub_topic', 'deadletter', {
    name: `${ref('var.bus_prefix')}${DEADLETTER_TOPIC}`,
    depends_on: [apiDependency('pubsub')],
  });
  add(pubsub, 'google_pubsub_subscription', 'deadletter_retained', {
    name: `${ref('var.bus_prefix')}${DEADLETTER_TOPIC}--${DEADLETTER_RETAINED}`,
    topic: ref('google_pubsub_topic.deadletter.id'),
    message_retention_duration: RETENTION,
    expiration_policy: [{ ttl: '' }],
  });
  add(pubsub, 'google_pubsub_topic_iam_member', 'deadletter__pubsub_agent', {
    topic: ref('google_pubsub_topic.deadletter.name'),
    role: 'roles/pubsub.publisher',
    member: ref('local.pubsub_service_agent'),
  });
  for (const topic of model.topics) {
    add(pubsub, 'google_pubsub_topic', tfName(topic), { name: `${ref('var.bus_prefix')}${topic}`, depends_on: [apiDependency('pubsub')] });
  }
  for (const service of model.services) {
    for (const topic of service.consumes) {
      const name = subscriptionResourceName(topic, service.name);
      add(pubsub, 'google_pubsub_subscription', name, {
        name: `${ref('var.bus_prefix')}${topic}--${service.name}`,
        topic: ref(`google_pubsub_topic.${tfName(topic)}.id`),
        ack_deadline_seconds: SUBSCRIPTION_ACK_DEADLINE_SEC,
        message_retention_duration: RETENTION,
        expiration_policy: [{ ttl: '' }],
        retry_policy: [{ minimum_backoff: '1s', maximum_backoff: '60s' }],
        dead_letter_policy: [
          { dead_letter_topic: ref('google_pubsub_topic.deadletter.id'), max_delivery_attempts: ref('var.max_delivery_attempts') },
        ],
      });
      // The Pub/Sub service agent acks what it moves to the dead-letter topic.
      add(pubsub, 'google_pubsub_subscription_iam_member', `${name}__pubsub_agent`, {
        subscription: ref(`google_pubsub_subscription.${name}.name`),
        role: 'roles/pubsub.subscriber',
        member: ref('local.pubsub_service_agent'),
      });
    }
  }
  files.push(
    file('pubsub.tf.json', 'Pub/Sub topics, one pull subscription per (service, consumed topic), dead letters.', { resource: pubsub }),
  );

  // Service accounts and least-privilege IAM.
  const iam: Blocks = {};
  const needsInstanceTopics = model.services.some((service) => service.perInstanceConsumes.length > 0);
  const needsReplyPublish = model.services.some(publishesReplies);
  if (needsInstanceTopics) {
    add(iam, 'google_project_iam_custom_role', 'instance_egress_consumer', {
      role_id: 'bitbratInstanceEgressConsumer',
      title: 'BitBrat per-instance egress consumer',
      description: 'Creates and consumes the per-instance egress topic and subscription of a running instance.',
      permissions: [
        'pubsub.subscriptions.consume',
        'pubsub.subscriptions.create',
        'pubsub.subscriptions.delete',
        'pubsub.subscriptions.get',
        'pubsub.topics.attachSubscription',
        'pubsub.topics.create',
        'pubsub.topics.get',
      ],
      depends_on: [apiDependency('iam')],
    });
  }
  if (needsReplyPublish) {
    add(iam, 'google_project_iam_custom_role', 'reply_publisher', {
      role_id: 'bitbratReplyPublisher',
      title: 'BitBrat reply publisher',
      description: 'Publishes replies to per-instance egress topics, which exist only at run time.',
      permissions: ['pubsub.topics.publish'],
      depends_on: [apiDependency('iam')],
    });
  }
  for (const service of model.services) {
    const sa = tfName(service.name);
    add(iam, 'google_service_account', sa, {
      account_id: accountId(service.name),
      display_name: `BitBrat ${service.name}`,
      depends_on: [apiDependency('iam')],
    });
    for (const topic of service.publishes) {
      add(iam, 'google_pubsub_topic_iam_member', `${tfName(topic)}__publisher__${sa}`, {
        topic: ref(`google_pubsub_topic.${tfName(topic)}.name`),
        role: 'roles/pubsub.publisher',
        member: member(service.name),
      });
    }
    for (const topic of service.consumes) {
      const subscription = subscriptionResourceName(topic, service.name);
      add(iam, 'google_pubsub_subscription_iam_member', `${subscription}__subscriber`, {
        subscription: ref(`google_pubsub_subscription.${subscription}.name`),
        role: 'roles/pubsub.subscriber',
        member: member(service.name),
      });
    }
    if (service.perInstanceConsumes.length > 0) {
      add(iam, 'google_project_iam_member', `${sa}__instance_egress_consumer`, {
        project: ref('var.project'),
        role: ref('google_project_iam_custom_role.instance_egress_consumer.id'),
        member: member(service.name),
      });
    }
    if (publishesReplies(service)) {
      add(iam, 'google_project_iam_member', `${sa}__reply_publisher`, {
        project: ref('var.project'),
        role: ref('google_project_iam_custom_role.reply_publisher.id'),
        member: member(service.name),
      });
    }
    if (service.needsStore) {
      // Firestore access can only be granted on the project.
      add(iam, 'google_project_iam_member', `${sa}__datastore_user`, {
        project: ref('var.project'),
        role: 'roles/datastore.user',
        member: member(service.name),
      });
    }
  }
  files.push(file('iam.tf.json', 'One service account per service with only the grants it needs.', { resource: iam }));

  // Secret Manager.
  const secrets: Blocks = {};
  for (const secret of model.secrets) {
    add(secrets, 'google_secret_manager_secret', tfName(secret), {
      secret_id: secret,
      replication: [{ auto: [{}] }],
      depends_on: [apiDependency('secretmanager')],
    });
  }
  for (const service of model.services) {
    for (const secret of service.secrets) {
      add(secrets, 'google_secret_manager_secret_iam_member', `${tfName(secret)}__${tfName(service.name)}`, {
        secret_id: ref(`google_secret_manager_secret.${tfName(secret)}.secret_id`),
        role: 'roles/secretmanager.secretAccessor',
        member: member(service.name),
      });
    }
  }
  files.push(
    file('secrets.tf.json', 'Secret Manager secrets (values are added with `gcloud secrets versions add`) and per-service access.', {
      resource: secrets,
    }),
  );

  // Cloud Run services.
  const run: Blocks = {};
  for (const service of model.services) {
    const sa = tfName(service.name);
    const consumer = isConsumer(service);
    const minInstances = consumer ? Math.max(1, service.manifest.scaling.min) : service.manifest.scaling.min;
    if (minInstances !== service.manifest.scaling.min) {
      warnings.push(
        `${service.name} consumes topics but has scaling.min ${service.manifest.scaling.min}; Cloud Run gets min_instance_count ${minInstances} so its pull consumer runs.`,
      );
    }
    const platformEnv: Record<string, string> = {
      MESSAGE_BUS_DRIVER: 'pubsub',
      BUS_PREFIX: ref('var.bus_prefix'),
      GOOGLE_CLOUD_PROJECT: ref('var.project'),
      STORE_DRIVER: 'firestore',
      SECRETS_PROVIDER: 'env',
      DATA_DIR: '/tmp/bitbrat',
      LOG_LEVEL: ref('var.log_level'),
      PUBLISH_MAX_RETRIES: '5',
    };
    const env: Body[] = [{ name: 'HOST', value: '0.0.0.0' }];
    for (const name of service.env) {
      if (service.secrets.includes(name) || name in CLOUD_RUN_OMITTED_ENV) continue;
      if (name in platformEnv) env.push({ name, value: platformEnv[name] });
      else if (name.startsWith('OTEL_'))
        env.push({ name, value: ref(`try(var.service_env[${quote(service.name)}][${quote(name)}], var.otel[${quote(name)}], "")`) });
      else env.push({ name, value: ref(`try(var.service_env[${quote(service.name)}][${quote(name)}], "")`) });
    }
    for (const secret of service.secrets) {
      env.push({
        name: secret,
        value_source: [
          { secret_key_ref: [{ secret: ref(`google_secret_manager_secret.${tfName(secret)}.secret_id`), version: 'latest' }] },
        ],
      });
    }
    const longLived = service.manifest.paths.some((p) => p.startsWith('/ws'));
    add(run, 'google_cloud_run_v2_service', sa, {
      name: `bitbrat-${service.name}`,
      location: ref('var.region'),
      description: service.manifest.description,
      ingress: service.manifest.expose ? 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER' : 'INGRESS_TRAFFIC_INTERNAL_ONLY',
      deletion_protection: false,
      template: [
        {
          service_account: ref(`google_service_account.${sa}.email`),
          ...(longLived ? { timeout: '3600s' } : {}),
          scaling: [{ min_instance_count: minInstances, max_instance_count: service.manifest.scaling.max }],
          vpc_access: [{ connector: ref('google_vpc_access_connector.connector.id'), egress: 'PRIVATE_RANGES_ONLY' }],
          containers: [
            {
              image: ref('local.image'),
              args: ['service', service.name],
              ports: [{ container_port: model.port }],
              // Pull consumers work outside requests: CPU must stay allocated.
              resources: [{ limits: { cpu: '1', memory: '512Mi' }, cpu_idle: !consumer, startup_cpu_boost: true }],
              env,
              startup_probe: [
                { http_get: [{ path: '/readyz', port: model.port }], period_seconds: 5, timeout_seconds: 3, failure_threshold: 24 },
              ],
              liveness_probe: [
                { http_get: [{ path: '/livez', port: model.port }], period_seconds: 15, timeout_seconds: 3, failure_threshold: 3 },
              ],
            },
          ],
        },
      ],
      depends_on: [
        apiDependency('run'),
        ...service.secrets.map((secret) => `google_secret_manager_secret_iam_member.${tfName(secret)}__${sa}`),
      ],
    });
    // The network (ingress setting) is the boundary; the load balancers call without identity tokens.
    add(run, 'google_cloud_run_v2_service_iam_member', `${sa}__invoker`, {
      name: ref(`google_cloud_run_v2_service.${sa}.name`),
      location: ref('var.region'),
      role: 'roles/run.invoker',
      member: 'allUsers',
    });
  }
  files.push(file('run.tf.json', 'One Cloud Run service per manifest service, all from the one image.', { resource: run }));

  // Internal application load balancer: <service>.<internal_domain> → that service.
  const internal: Blocks = {};
  for (const service of model.services) {
    const sa = tfName(service.name);
    add(internal, 'google_compute_region_network_endpoint_group', `internal_${sa}`, {
      name: `bb-int-${service.name}`,
      region: ref('var.region'),
      network_endpoint_type: 'SERVERLESS',
      cloud_run: [{ service: ref(`google_cloud_run_v2_service.${sa}.name`) }],
    });
    add(internal, 'google_compute_region_backend_service', `internal_${sa}`, {
      name: `bb-int-${service.name}`,
      region: ref('var.region'),
      load_balancing_scheme: 'INTERNAL_MANAGED',
      protocol: 'HTTP',
      backend: [{ group: ref(`google_compute_region_network_endpoint_group.internal_${sa}.id`) }],
    });
  }
  const defaultInternal = tfName((exposed[0] ?? model.services[0])!.name);
  add(internal, 'google_compute_region_url_map', 'internal', {
    name: 'bitbrat-internal',
    region: ref('var.region'),
    default_service: ref(`google_compute_region_backend_service.internal_${defaultInternal}.id`),
    host_rule: model.services.map((service) => ({
      hosts: [`${service.name}.${ref('var.internal_domain')}`],
      path_matcher: tfName(service.name),
    })),
    path_matcher: model.services.map((service) => ({
      name: tfName(service.name),
      default_service: ref(`google_compute_region_backend_service.internal_${tfName(service.name)}.id`),
    })),
  });
  add(internal, 'google_compute_region_target_http_proxy', 'internal', {
    name: 'bitbrat-internal',
    region: ref('var.region'),
    url_map: ref('google_compute_region_url_map.internal.id'),
  });
  add(internal, 'google_compute_address', 'internal_lb', {
    name: 'bitbrat-internal-lb',
    region: ref('var.region'),
    subnetwork: ref('google_compute_subnetwork.services.id'),
    address_type: 'INTERNAL',
    purpose: 'SHARED_LOADBALANCER_VIP',
  });
  add(internal, 'google_compute_forwarding_rule', 'internal', {
    name: 'bitbrat-internal',
    region: ref('var.region'),
    load_balancing_scheme: 'INTERNAL_MANAGED',
    ip_protocol: 'TCP',
    port_range: '80',
    target: ref('google_compute_region_target_http_proxy.internal.id'),
    network: ref('google_compute_network.vpc.id'),
    subnetwork: ref('google_compute_subnetwork.services.id'),
    ip_address: ref('google_compute_address.internal_lb.address'),
    network_tier: 'PREMIUM',
    depends_on: ['google_compute_subnetwork.proxy_only'],
  });
  files.push(
    file('lb-internal.tf.json', 'Regional internal application load balancer for traffic inside the VPC.', { resource: internal }),
  );

  // External HTTPS load balancer: only expose: true services, only their manifest paths.
  const outputs: Record<string, Body> = {
    internal_lb_ip: {
      value: ref('google_compute_address.internal_lb.address'),
      description: 'Address of the internal load balancer (<service>.<internal_domain>).',
    },
    service_urls: {
      value: Object.fromEntries(
        model.services.map((service) => [service.name, ref(`google_cloud_run_v2_service.${tfName(service.name)}.uri`)]),
      ),
      description: 'Cloud Run URLs (reachable only as their ingress setting allows).',
    },
    topics: { value: model.topics.map((topic) => `${ref('var.bus_prefix')}${topic}`), description: 'Pub/Sub topics.' },
  };
  if (exposed.length > 0) {
    const external: Blocks = {};
    for (const service of exposed) {
      const sa = tfName(service.name);
      add(external, 'google_compute_region_network_endpoint_group', `external_${sa}`, {
        name: `bb-ext-${service.name}`,
        region: ref('var.region'),
        network_endpoint_type: 'SERVERLESS',
        cloud_run: [{ service: ref(`google_cloud_run_v2_service.${sa}.name`) }],
      });
      add(external, 'google_compute_backend_service', `external_${sa}`, {
        name: `bb-ext-${service.name}`,
        load_balancing_scheme: 'EXTERNAL_MANAGED',
        protocol: 'HTTPS',
        backend: [{ group: ref(`google_compute_region_network_endpoint_group.external_${sa}.id`) }],
      });
    }
    const pathRules = exposed
      .filter((service) => service.manifest.paths.length > 0)
      .map((service) => ({
        paths: [...service.manifest.paths],
        service: ref(`google_compute_backend_service.external_${tfName(service.name)}.id`),
      }));
    const rootOwner = exposed.find((service) => service.manifest.paths.includes('/'));
    // Anything that is not a listed path goes to "/" (when a service serves it) instead of reaching a service.
    const fallback: Body = rootOwner
      ? { default_url_redirect: [{ path_redirect: '/', redirect_response_code: 'FOUND', strip_query: true }] }
      : { default_service: ref(`google_compute_backend_service.external_${tfName(exposed[0]!.name)}.id`) };
    if (!rootOwner) warnings.push('no exposed service serves "/": unmatched external paths go to the first exposed service.');
    add(external, 'google_compute_url_map', 'external', {
      name: 'bitbrat-external',
      ...fallback,
      host_rule: [{ hosts: ['*'], path_matcher: 'exposed' }],
      path_matcher: [{ name: 'exposed', ...fallback, path_rule: pathRules }],
    });
    add(external, 'google_compute_managed_ssl_certificate', 'external', {
      name: 'bitbrat-external',
      managed: [{ domains: ref('var.domains') }],
    });
    add(external, 'google_compute_target_https_proxy', 'external', {
      name: 'bitbrat-external',
      url_map: ref('google_compute_url_map.external.id'),
      ssl_certificates: [ref('google_compute_managed_ssl_certificate.external.id')],
    });
    add(external, 'google_compute_global_address', 'external', { name: 'bitbrat-external', depends_on: [apiDependency('compute')] });
    add(external, 'google_compute_global_forwarding_rule', 'https', {
      name: 'bitbrat-https',
      load_balancing_scheme: 'EXTERNAL_MANAGED',
      ip_protocol: 'TCP',
      port_range: '443',
      target: ref('google_compute_target_https_proxy.external.id'),
      ip_address: ref('google_compute_global_address.external.id'),
    });
    add(external, 'google_compute_url_map', 'http_redirect', {
      name: 'bitbrat-http-redirect',
      default_url_redirect: [{ https_redirect: true, redirect_response_code: 'MOVED_PERMANENTLY_DEFAULT', strip_query: false }],
    });
    add(external, 'google_compute_target_http_proxy', 'http_redirect', {
      name: 'bitbrat-http-redirect',
      url_map: ref('google_compute_url_map.http_redirect.id'),
    });
    add(external, 'google_compute_global_forwarding_rule', 'http', {
      name: 'bitbrat-http',
      load_balancing_scheme: 'EXTERNAL_MANAGED',
      ip_protocol: 'TCP',
      port_range: '80',
      target: ref('google_compute_target_http_proxy.http_redirect.id'),
      ip_address: ref('google_compute_global_address.external.id'),
    });
    files.push(
      file('lb-external.tf.json', 'Global external HTTPS load balancer: only services with expose: true, only their manifest paths.', {
        resource: external,
      }),
    );
    outputs.external_ip = { value: ref('google_compute_global_address.external.address'), description: 'Point the domains here.' };
  }

  files.push(file('outputs.tf.json', 'Outputs.', { output: outputs }));
  return { files, warnings };
}
