export { SftpReplicaClient, type SftpReplicaClientOptions } from './client.js';
export { sftpBackend, parseSftpUrl, sftpOptionsFromConfig, SFTP_CONFIG_KEYS } from './backend.js';
export {
  fingerprint,
  parseKnownHosts,
  parsePublicKey,
  checkKnownHosts,
  knownHostsName,
  type KnownHostEntry,
  type PublicKey,
  type HostKeyCheck,
} from './host-key.js';
