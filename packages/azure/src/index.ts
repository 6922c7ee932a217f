export { AzureReplicaClient, MAX_BATCH_SIZE } from './client.js';
export type { AzureReplicaClientOptions, AzureRetryOptions } from './client.js';
export { azureBackend, azureOptionsFromConfig, ACCOUNT_KEY_ENV, SAS_TOKEN_ENV } from './backend.js';
export { azureErrorInfo, isBlobNotFound } from './errors.js';
