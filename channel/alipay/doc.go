// Package alipay is the Alipay open-platform payment channel (RSA2, public-key mode): it
// implements ordercore.Channel for computer-website payments (alipay.trade.page.pay) and
// their refunds, in CNY.
//
// It owns the protocol at the edge and nothing else:
//   - signing every gateway request with the merchant's application key (RSA2: SHA256withRSA
//     over the sorted parameters), including the redirect URL that opens the cashier page;
//   - authenticating every gateway answer with the Alipay public key over the raw bytes of
//     its <method>_response node before reading it, so that an answer nobody can vouch for
//     becomes ordercore.ErrOutcomeUnknown and never a definite statement about money;
//   - authenticating asynchronous notifications from their raw form body before reading
//     anything out of them, then checking that they are addressed to our app and seller;
//   - mapping Alipay's trade statuses, refund answers and error codes onto ordercore's
//     statuses and control errors (ErrOutcomeUnknown, ErrTradeNotFound, ErrTradePaid,
//     *ordercore.ChannelError).
//
// What to do with a payment or a refund is not its business: it keeps no state besides its
// configuration, and is safe for concurrent use.
//
// It imports only the standard library, the root package ordercore and
// ordercore/channel/internal/outbound, through which every outbound call goes. It must not
// import another channel or anything that holds state.
package alipay
