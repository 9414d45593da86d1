/* Peer addresses: parsing HOST:PORT, and the allow-list a listener checks
 * before it accepts a connection (UCX's wire carries no authentication,
 * so the address is all there is to go on; docs/bridge.md "Security"). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsb.h"

static int parse_ip(const char *s, int *family, uint8_t addr[16])
{
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, s, addr) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, addr) == 1) {
		*family = AF_INET6;
		return 0;
	}
	return HS_EINVAL;
}

int hsb_allow_add(struct hsb_allow *a, const char *spec)
{
	char host[INET6_ADDRSTRLEN + 8];
	if (a->n >= HSB_MAX_ALLOW || snprintf(host, sizeof(host), "%s", spec) >= (int)sizeof(host))
		return HS_EINVAL;
	struct hsb_net *net = &a->nets[a->n];
	char *slash = strchr(host, '/');
	if (slash)
		*slash = '\0';
	if (parse_ip(host, &net->family, net->addr) < 0)
		return HS_EINVAL;
	int max = net->family == AF_INET ? 32 : 128;
	net->prefix = max;
	if (slash) {
		char *end;
		long bits = strtol(slash + 1, &end, 10);
		if (*end || end == slash + 1 || bits < 0 || bits > max)
			return HS_EINVAL;
		net->prefix = (int)bits;
	}
	a->n++;
	return 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
	int bytes = bits / 8, rest = bits % 8;
	if (memcmp(a, b, (size_t)bytes) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

bool hsb_allow_check(const struct hsb_allow *a, const struct sockaddr_storage *ss)
{
	if (a->n == 0)
		return true;
	uint8_t addr[16] = { 0 };
	int family = ss->ss_family;
	if (family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (family == AF_INET6) {
		const struct in6_addr *v6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(v6)) { /* ::ffff:a.b.c.d is an IPv4 peer */
			family = AF_INET;
			memcpy(addr, &v6->s6_addr[12], 4);
		} else {
			memcpy(addr, v6, 16);
		}
	} else {
		return false;
	}
	for (int i = 0; i < a->n; i++)
		if (a->nets[i].family == family &&
		    prefix_match(a->nets[i].addr, addr, a->nets[i].prefix))
			return true;
	return false;
}

void hsb_addr_format(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
		snprintf(buf, size, "%s:%u", ip, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
		snprintf(buf, size, "[%s]:%u", ip, port);
	} else {
		snprintf(buf, size, "(family %d)", ss->ss_family);
	}
}

int hsb_addr_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(spec, ':');
	if (!colon || colon == spec)
		return HS_EINVAL;
	size_t hl = (size_t)(colon - spec);
	if (spec[0] == '[') { /* [v6]:port */
		if (hl < 2 || spec[hl - 1] != ']')
			return HS_EINVAL;
		spec++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return HS_EINVAL;
	memcpy(host, spec, hl);
	host[hl] = '\0';
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port < 0 || port > 65535)
		return HS_EINVAL;
	memset(ss, 0, sizeof(*ss));
	int family;
	uint8_t addr[16];
	if (parse_ip(host, &family, addr) < 0)
		return HS_EINVAL;
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		memcpy(&s4->sin_addr, addr, 4);
		*len = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		memcpy(&s6->sin6_addr, addr, 16);
		*len = sizeof(*s6);
	}
	return 0;
}
