-- SMTP TLS reports (RFC 8460) that other organizations send about sessions to the
-- organization's MX hosts: the report, its policies and their failure details. A report is
-- counted on the UTC day its date range starts (start_day). Keys lead with organization_id.

CREATE TABLE tls_reports (
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    report_id text NOT NULL CHECK (report_id <> ''),
    reporting_organization text NOT NULL,
    contact_info text,
    start_at timestamptz NOT NULL,
    end_at timestamptz NOT NULL,
    start_day date NOT NULL GENERATED ALWAYS AS ((start_at AT TIME ZONE 'UTC')::date) STORED,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, report_id),
    CHECK (end_at >= start_at)
);

CREATE INDEX tls_reports_by_day ON tls_reports (organization_id, start_day);

CREATE TABLE tls_report_policies (
    organization_id bigint NOT NULL,
    report_id text NOT NULL,
    policy_index integer NOT NULL CHECK (policy_index >= 0),
    policy_type text NOT NULL CHECK (policy_type IN ('sts', 'tlsa', 'no-policy-found')),
    policy_domain text NOT NULL CHECK (policy_domain = lower(policy_domain)),
    policy_strings text[] NOT NULL DEFAULT '{}',
    mx_host_patterns text[] NOT NULL DEFAULT '{}',
    successful_sessions bigint NOT NULL CHECK (successful_sessions >= 0),
    failed_sessions bigint NOT NULL CHECK (failed_sessions >= 0),
    PRIMARY KEY (organization_id, report_id, policy_index),
    FOREIGN KEY (organization_id, report_id)
        REFERENCES tls_reports (organization_id, report_id) ON DELETE CASCADE
);

CREATE INDEX tls_report_policies_by_domain
    ON tls_report_policies (organization_id, policy_domain);

CREATE TABLE tls_report_failures (
    organization_id bigint NOT NULL,
    report_id text NOT NULL,
    policy_index integer NOT NULL,
    failure_index integer NOT NULL CHECK (failure_index >= 0),
    result_type text NOT NULL,
    sending_mta_ip inet,
    receiving_mx_hostname text,
    receiving_mx_helo text,
    receiving_ip inet,
    failed_sessions bigint NOT NULL CHECK (failed_sessions >= 0),
    additional_information text,
    failure_reason_code text,
    PRIMARY KEY (organization_id, report_id, policy_index, failure_index),
    FOREIGN KEY (organization_id, report_id, policy_index)
        REFERENCES tls_report_policies (organization_id, report_id, policy_index)
        ON DELETE CASCADE
);
