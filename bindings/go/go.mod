module github.com/minerva-ai/minerva/bindings/go

go 1.23
