package minerva_test

import (
	"context"
	"fmt"
	"log"

	minerva "github.com/minerva-ai/minerva/bindings/go"
)

func Example() {
	engine, err := minerva.Open("model.gguf", nil)
	if err != nil {
		log.Fatal(err) // e.g. errors.Is(err, minerva.ErrIO) for a missing file
	}
	defer engine.Close()

	p := minerva.DefaultGenerateParams()
	p.MaxTokens = 64
	p.Temperature = 0 // greedy
	text, err := engine.Generate(context.Background(), "Once upon a time", p)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(text)

	s, err := engine.Stream(context.Background(), "The dragon said", p) // pull mode
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	for piece, err := range s.Text() {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(piece)
	}
}
