#!/usr/bin/env bash
# The test suite. Besides cargo, the end-to-end tests drive real peers: Python's smtplib/
# poplib/imaplib and swaks as clients, dnsmasq as the DNS server the relay resolves MX records
# from, Postfix (its smtp-sink, and a Postfix instance as a receiving MTA) and fail2ban-regex.
# Missing Debian packages are installed when running as root; otherwise the script says what
# to install.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
{ command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ]; } || need+=(dnsmasq-base)
[ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/postfix ] || need+=(postfix)
command -v fail2ban-regex >/dev/null || need+=(fail2ban)
command -v swaks >/dev/null || need+=(swaks)
# swaks speaks TLS through Net::SSLeay, only a recommendation of its package.
perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        # Postfix's package must not configure or start a system mail server.
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "scripts/test.sh: please install: ${need[*]} (Debian packages)" >&2
        exit 1
    fi
fi

# --no-fail-fast: one failing test binary must not hide the results of the others.
exec cargo test --workspace --no-fail-fast "$@"
