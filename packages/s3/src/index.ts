export { S3ReplicaClient, MAX_DELETE_KEYS, deleteOutputError } from './client.js';
export type { S3ReplicaClientOptions, S3Credentials } from './client.js';
export { s3Backend, resolveS3Options, S3_CONFIG_KEYS } from './backend.js';
export { parseHost, parseS3Url, DEFAULT_REGION } from './config.js';
export type { ChecksumMode, ParsedHost } from './config.js';
