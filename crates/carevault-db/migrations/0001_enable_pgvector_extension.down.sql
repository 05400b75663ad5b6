-- Never drops the extension: other databases and objects in the cluster may use it (DESIGN §5.1).
SELECT 1;
