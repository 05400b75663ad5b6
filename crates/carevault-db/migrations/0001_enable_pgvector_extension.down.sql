-- Never drops the extension: other databases and objects in the cluster may use it (docs/ARCHITECTURE.md "Roles").
SELECT 1;
