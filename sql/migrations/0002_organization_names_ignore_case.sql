-- Organization names are compared without regard to case: "ACME" and "acme" are one organization.

CREATE UNIQUE INDEX organizations_name_folded ON organizations (lower(name));
