// Package ratelimit throttles password logins, signups and refreshes per
// client IP and per account, with a soft (exponential) lockout per
// (account, IP) pair. It decides; it does not speak HTTP. A denied
// [Decision] carries RetryAfter, which the HTTP layer turns into
// 429 Too Many Requests with a Retry-After header (RFC 6585 section 4,
// RFC 9110 section 10.2.3). Decision.Reason is for logs and metrics only.
//
// # Limits
//
// A login attempt passes, in order:
//
//   - the per-IP bucket ([Policy].LoginPerIP). Every attempt takes a token,
//     so one address spraying one password over many accounts is limited
//     (OWASP Credential Stuffing cheat sheet). IPv6 addresses are grouped by
//     their /64, since one subscriber usually controls a whole /64;
//   - the soft lockout of the (account, IP) pair: after
//     [Policy].LockoutThreshold failures the next attempt must wait
//     LockoutBase·2^(failures−threshold), capped at LockoutMax. A success
//     resets the pair; LockoutIdle after its last failure the pair is
//     forgotten;
//   - the per-account bucket ([Policy].LoginPerAccount), shared by all
//     addresses, which caps the guessing rate on one account however many
//     addresses an attacker uses. The default (burst 10, one token per 40s)
//     admits at most 10+3600/40 = 100 attempts in any hour, so at most 100
//     failures per hour per account (ASVS 4.0.3 2.2.1, NIST SP 800-63B
//     §5.2.2). A pair that logged in successfully within
//     [Policy].KnownDeviceTTL is exempt from this bucket (but not from the
//     IP bucket or its own lockout). A login with a valid device token
//     ([Throttle.DeviceLogin], docs/design.md "Returning devices") takes a
//     token from its device's own bucket ([Policy].LoginPerDevice) instead.
//     When this bucket denies, RetryAfter is drawn at random from [E, 2E),
//     E being the exact wait, so it cannot be used to time one guess per
//     refill.
//
// The account bucket is charged when the attempt is admitted, before the
// password is hashed, not when it fails: "check a token is there, take it
// on failure" lets any number of concurrent requests share the last token,
// so it would not bound the guessing rate. A success costs one token too,
// which is negligible next to 100 per hour.
//
// Keys depend only on the account string the client sent (trimmed and
// normalised, as session.NormalizeEmail does) and the address, never on
// whether the account exists, so an unknown account is throttled exactly
// like an existing one and throttling tells nothing about which accounts
// exist (OWASP Authentication cheat sheet). Account names and addresses are
// hashed (SHA-256, 128 bits kept) before they are used as keys, so a shared
// Redis does not hold email addresses in clear.
//
// # No permanent lockout
//
// No sequence of failures locks anyone out for good (ASVS 5.0 6.1.1):
//
//   - every bucket refills at its fixed rate whatever happens, so a token
//     is available at most Every after the attacker stops taking them, and
//     while he goes on he is himself held to that rate;
//   - the soft lockout belongs to one (account, IP) pair. Failures from the
//     attacker's addresses delay only those addresses, never the owner's.
//     Its delay is capped at LockoutMax, and the pair is forgotten
//     LockoutIdle after its last failure;
//   - the per-account bucket is the one limit that strangers can drain for
//     the owner. Addresses the owner recently logged in from are exempt
//     from it, and so is a device holding a device token of the account,
//     from any address, so a distributed attacker who keeps the bucket
//     empty cannot keep the owner out of the devices he uses, on whatever
//     network. Only a device that never logged in competes with the
//     attacker for the next token.
//
// Known issue: an attacker behind the same address as the owner (a shared
// NAT) shares the owner's pair and can hold it at the LockoutMax delay for
// as long as he keeps failing; password reset is not throttled by this
// package and stays usable (checklist LOGIN-04).
//
// # Backends
//
// [Memory] keeps state in the process (golang.org/x/time/rate limiters),
// with a bound on the number of keys. [Redis] keeps it in Redis, so that
// many Latch nodes share one set of limits; its scripts read the Redis
// server's clock, so nodes with skewed clocks agree.
//
// If the backend fails, the [Throttle] does not fail the request: it makes
// that call on a per-process [Memory] instead (fail open to local limits)
// and reports the error to the function given with [WithOnBackendError].
// For a cool-down after a failure ([WithBackendCooldown], default 5s) it
// uses the local limits only, so an outage costs one backend timeout
// ([WithBackendTimeout], default 250ms) per cool-down, not per request.
// Limits then hold per node rather than across nodes until the backend is
// back.
package ratelimit
