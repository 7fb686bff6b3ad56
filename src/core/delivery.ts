/** Why a reply was not delivered (`delivery.reason`): the same words for every platform's egress. */
export const DeliveryReason = {
  RATE_LIMITED: 'RATE_LIMITED',
  DEADLINE: 'DEADLINE',
  SEND_FAILED: 'SEND_FAILED',
  NOT_CONNECTED: 'NOT_CONNECTED',
  NOT_CONFIGURED: 'NOT_CONFIGURED',
  NO_REPLY: 'NO_REPLY',
  UNSUPPORTED_PLATFORM: 'UNSUPPORTED_PLATFORM',
  DUPLICATE: 'DUPLICATE',
  CANCELLED: 'CANCELLED',
} as const;
export type DeliveryReason = (typeof DeliveryReason)[keyof typeof DeliveryReason];
