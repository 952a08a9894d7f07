module lifeboat.local/pause

go 1.21
