"""AWS adapters behind small interfaces: the signed JSON client and its endpoints, the customers table, the
Secrets Manager reader and the Cognito user directory. They never import the service."""
