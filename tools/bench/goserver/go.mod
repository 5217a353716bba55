module vod-operator/benchgoserver

go 1.26
