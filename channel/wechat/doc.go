// Package wechat is the WeChat Pay API v3 payment channel: it implements ordercore.Channel
// for Native (QR code) payments and domestic refunds.
//
// It owns the protocol at the edge and nothing else:
//   - signing every request with the merchant's RSA key (the Authorization header of
//     scheme WECHATPAY2-SHA256-RSA2048);
//   - authenticating every answer with a configured platform key before reading it, so
//     that an answer nobody can vouch for becomes ordercore.ErrOutcomeUnknown and never a
//     definite statement about money;
//   - authenticating notifications from their raw bytes (headers, probe traffic, the
//     replay window, the platform key, the AES-256-GCM resource), and only then reading
//     them into an ordercore.Notification;
//   - mapping WeChat's trade and refund states and error codes onto ordercore's
//     statuses and control errors.
//
// What to do with a payment or a refund is not its business: it keeps no state besides
// its configuration, and is safe for concurrent use.
//
// It imports only the standard library, the root package ordercore and
// ordercore/channel/internal/outbound, through which every outbound call goes. It must
// not import another channel or anything that holds state.
package wechat
